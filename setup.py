"""World Models (Ha & Schmidhuber, 2018) in TensorFlow/Keras 3: V (ConvVAE), M (MDN-RNN), C (controller)."""

from setuptools import find_packages, setup

# run.export_web: Keras 3 exports ONNX through tf2onnx (which needs onnx); playwright drives an installed Chromium
# (Debian's `chromium`, no browser download) for --screenshot and the page's tests.
WEB = ["onnx>=1.17,<1.24", "tf2onnx>=1.17,<1.18", "playwright>=1.49,<1.66"]
# --backend=ray: rollouts, CMA-ES and evaluation on a Ray cluster (measured with Ray 2.60).
RAY = ["ray>=2.40,<3"]

setup(
    name="worldmodels",
    version="0.1.0",
    description="A faithful TensorFlow/Keras reimplementation of World Models (Ha & Schmidhuber, 2018).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["common", "common.*", "vae", "vae.*", "rnn", "rnn.*", "controller", "controller.*",
                                    "envs", "envs.*", "run", "run.*"]),
    package_data={"run": ["configs/*.cfg", "web/*.html", "web/*.js"]},
    install_requires=[
        "tensorflow>=2.18,<2.22",
        # TFP 0.25 imports only beside the tf-keras of TensorFlow's minor version; the models use Keras 3.
        "tensorflow-probability==0.25.*",
        "tf-keras>=2.18,<2.22",
        "tensorboard>=2.18,<2.22",  # tf.summary needs it to write logs, and users need it to read them
        "gymnasium[box2d]>=1.0,<2",
        "vizdoom>=1.2",
        "cma>=3.3",
        "numpy>=1.26",
        "absl-py>=2.0",
        "pillow>=10",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.4.9",
        "matplotlib>=3.7",
    ],
    extras_require={
        # import-linter checks the layering (.importlinter), ruff the code (ruff.toml): tests/test_structure.py;
        # the web extra because tests/test_export_web.py plays the exported page in Chromium, the ray extra because
        # tests/test_ray.py runs the Ray backend on a real two-node cluster
        "test": ["pytest>=7", "pytest-timeout>=2", "scipy>=1.10", "import-linter>=2.0", "ruff>=0.6", *WEB, *RAY],
        "web": WEB,
        "ray": RAY,
        "gpu": ["tensorflow[and-cuda]>=2.18,<2.22"],
    },
)
