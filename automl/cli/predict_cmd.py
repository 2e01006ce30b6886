"""``automl predict``: top-k classes of image files with an exported bundle."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from automl.cli.argtypes import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify PNG/JPEG images with an exported bundle",
        description="Images are converted as training saw them: grey is replicated to RGB, an "
        "RGB image feeds a grey model only when its channels are equal; a wrong size is an "
        "error unless --resize (bilinear) is given.",
    )
    p.add_argument("--model", required=True, help="bundle folder written by 'automl export'")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument(
        "--top-k", type=positive_int, default=3, help="classes shown per image (default 3)"
    )
    p.add_argument(
        "--format",
        default="table",
        choices=["table", "csv", "jsonl"],
        help="output format (default: a table)",
    )
    p.add_argument(
        "--resize", action="store_true", help="resize images to the model's input size (bilinear)"
    )
    p.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "program", "eager"],
        help="program: the bundle's exported program in its runtime; eager: PyTorch rebuilt from "
        "weights.pt; auto (default): program for TorchScript and ONNX, eager for exported-program "
        "(torch.export.load may unpickle)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    p.set_defaults(func=run)


def _rows(paths: list[Any], probs: Any, classes: list[str], k: int) -> list[dict[str, Any]]:
    k = min(k, len(classes))
    top = probs.topk(k, dim=-1)
    rows = []
    for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist(), strict=True):
        rows.append(
            {
                "image": str(path),
                "top": [
                    {"rank": r + 1, "class": classes[i], "index": i, "probability": v}
                    for r, (v, i) in enumerate(zip(values, indices, strict=True))
                ],
            }
        )
    return rows


def _print(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "jsonl":
        for row in rows:
            print(json.dumps(row))
        return
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["image", "rank", "class", "index", "probability"])
        for row in rows:
            for t in row["top"]:
                w.writerow(
                    [row["image"], t["rank"], t["class"], t["index"], f"{t['probability']:.6f}"]
                )
        return
    width = max(len("image"), *(len(r["image"]) for r in rows))
    print(f"{'image':<{width}}  rank  {'class':<16} probability")
    for row in rows:
        for t in row["top"]:
            print(
                f"{row['image']:<{width}}  {t['rank']:>4}  {t['class']:<16} {t['probability']:.4f}"
            )


def run(args: argparse.Namespace) -> int:
    from automl.export.predict import predict_files

    paths, probs, classes = predict_files(
        args.model,
        args.images,
        resize=args.resize,
        runtime=args.runtime,
        batch_size=args.batch_size,
    )
    _print(_rows(paths, probs, classes, args.top_k), args.format)
    return 0
