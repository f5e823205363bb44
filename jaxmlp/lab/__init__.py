"""The lab: `python -m jaxmlp.lab`, a local server whose page trains what a person chooses and
draws the run as it goes.

`settings` turns the page's text into a `Config` as the flags do; `jobs.Lab` queues runs and
trains them one at a time with `runner.run`, each epoch in chunks (`stream.live_epochs`, the
programs of `programs.Chunks`); `follow.Follower` publishes what a run shows (frames, its
folder's rows, the report's findings) to `hub.Hub`, which the server (`server.make_app`, a
Starlette application) streams to every page as server-sent events. The page, its script and
stylesheet are package data in `static/`.
"""
