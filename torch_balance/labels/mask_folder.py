"""Image/mask pairs in two folders, matched by file stem: a segmentation dataset whose masks
:func:`~torch_balance.labels.masks.class_pixel_counts` reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from torch_balance._validation import Text, check_callable, check_index, fail

__all__ = ["MaskFolder"]


class MaskFolder(Dataset):
    """Image/mask pairs in two folders, matched by file stem: ``root/images/<stem>.<ext>``
    and ``root/masks/<stem>.png``.

    ``dataset[i]`` is ``(image, mask)``: the image converted to RGB and the mask as stored
    (a ``'P'`` or ``'L'`` PIL image of class ids), passed through ``transforms(image, mask)``
    when given. The pairs are sorted by stem; every mask needs its image and every image its
    mask. :attr:`masks` lists the mask files, which :func:`class_pixel_counts` reads.

    Args:
        root: The folder holding the two subfolders.
        images: Name of the image subfolder.
        masks: Name of the mask subfolder.
        transforms: ``transforms(image, mask) -> sample``, optional.

    Raises:
        ValueError: For a missing folder, no pairs, or a file without its partner.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for sub in ("images", "masks"):
        ...     (root / sub).mkdir()
        >>> Image.new("RGB", (4, 4)).save(root / "images" / "a.jpg")
        >>> Image.new("L", (4, 4)).save(root / "masks" / "a.png")
        >>> folder = MaskFolder(root)
        >>> len(folder), [Path(p).name for p in folder.masks]
        (1, ['a.png'])
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        images: str = "images",
        masks: str = "masks",
        transforms: Any = None,
    ) -> None:
        for name, value in (("root", root), ("images", images), ("masks", masks)):
            if not isinstance(value, (str, os.PathLike)):
                fail(name, "a folder path (str or os.PathLike)", value, kind=TypeError)
        if Path(images) == Path(masks) or Path(".") in (Path(images), Path(masks)):
            fail("masks", f"a subfolder of root other than images={images!r}", masks)
        if transforms is not None:
            check_callable("transforms", transforms, 2, "transforms(image, mask)")
        self.root = Path(root)
        self.transforms = transforms
        found = {}
        for sub in (images, masks):
            folder = self.root / sub
            if not folder.is_dir():
                fail(
                    "root",
                    f"a folder with subfolders {images!r} and {masks!r}",
                    str(self.root),
                    f"{folder} is missing",
                )
            files = sorted(
                p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
            )
            by_stem: dict[str, Path] = {}
            for path in files:
                if path.stem in by_stem:
                    fail(
                        f"root/{sub}",
                        "one file per stem",
                        Text(f"{by_stem[path.stem].name} and {path.name}"),
                        "Keep one file for each sample",
                    )
                by_stem[path.stem] = path
            found[sub] = by_stem
        image_files, mask_files = found[images], found[masks]
        lonely = sorted(set(image_files) ^ set(mask_files))
        if lonely:
            stem = lonely[0]
            where = masks if stem in image_files else images
            fail(
                "root",
                "an image and a mask for every stem",
                Text(
                    f"{len(lonely)} unpaired file(s), the first {stem!r} without a file in {where}/"
                ),
                "Add the missing files or move the unpaired ones out",
            )
        if not mask_files:
            fail("root", "at least one image/mask pair", str(self.root))
        stems = sorted(mask_files)
        self.images = [str(image_files[s]) for s in stems]
        self.masks = [str(mask_files[s]) for s in stems]

    def __len__(self) -> int:
        """The number of image/mask pairs."""
        return len(self.masks)

    def __getitem__(self, index: int) -> Any:
        """Pair ``index``: ``(image, mask)`` as PIL images, through ``transforms`` if given."""
        i = check_index(index, len(self.masks))
        image = Image.open(self.images[i]).convert("RGB")
        mask = Image.open(self.masks[i])
        mask.load()
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask
