"""What jaxmlp knows about each IDX data set: its files, folder names, tfds name, mirrors, the
SHA-256 of each file's content and the sizes that bound a download."""

from __future__ import annotations

import dataclasses

# The four files of an IDX data set, without the ".gz" that they usually carry.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Bytes of each file's decompressed content, the same in both data sets: the IDX header (4 bytes,
# then 4 per dimension) and one byte per value, for 60,000 train and 10,000 test 28x28 images.
_CONTENT_BYTES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What the loader needs to know about one IDX data set."""

    folders: tuple[str, ...]  # folder names accepted under a parent; the first is used for caching
    tfds_name: str
    mirrors: tuple[str, ...]
    # SHA-256 of each file's *decompressed* bytes: mirrors' gzip wrappers differ, contents do not.
    sha256: dict[str, str]
    # Bytes of each .gz file as the default mirrors serve it. Other copies of the same content
    # differ by a few bytes (gzip header fields, compressor), so downloads allow some slack.
    gz_bytes: dict[str, int]
    # Bytes of each file's decompressed content (exact: the content is fixed by its SHA-256).
    content_bytes: dict[str, int] = dataclasses.field(default_factory=lambda: dict(_CONTENT_BYTES))


_SPECS = {
    "mnist": _Spec(
        folders=("mnist",),
        tfds_name="mnist",
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        gz_bytes={
            "train-images-idx3-ubyte": 9_912_422,
            "train-labels-idx1-ubyte": 28_881,
            "t10k-images-idx3-ubyte": 1_648_877,
            "t10k-labels-idx1-ubyte": 4_542,
        },
    ),
    "fashion_mnist": _Spec(
        folders=("fashion-mnist", "fashion_mnist"),
        tfds_name="fashion_mnist",
        mirrors=("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        gz_bytes={
            "train-images-idx3-ubyte": 26_421_880,
            "train-labels-idx1-ubyte": 29_515,
            "t10k-images-idx3-ubyte": 4_422_102,
            "t10k-labels-idx1-ubyte": 5_148,
        },
    ),
}
