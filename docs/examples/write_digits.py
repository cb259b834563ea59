"""Write the first eight MNIST test digits of the embedded ``mnist5k`` set as PNG files, named by their label:
images to try ``dasvit predict`` on.

    python docs/examples/write_digits.py        # -> docs/examples/digits/<index>_<label>.png
"""

from pathlib import Path

import numpy as np
from PIL import Image

from dasvit.config import DataConfig
from dasvit.data import load_data

OUT = Path(__file__).parent / "digits"


def main() -> None:
    data = load_data(DataConfig("mnist5k"))
    OUT.mkdir(exist_ok=True)
    for index in range(8):
        image, label = data.test[index]
        pixels = (image[0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(OUT / f"{index}_{label}.png")


if __name__ == "__main__":
    main()
