"""RadImageNet weights as an ordinary torch.nn.Module, trained in a plain PyTorch loop.

Under KERAS_BACKEND=torch, the model that ``build_model`` returns *is* a ``torch.nn.Module``: its trainable
weights are ``model.parameters()``, it runs on torch tensors, and autograd, optimizers and DataLoaders work as
for any other module. The RadImageNet ``.h5`` file is the Keras 2 file as published.

What the weights expect: channels-last float images, (N, H, W, 3), with values 0–255, grayscale repeated
into three channels. The model carries its preprocessing (RadImageNet's: RGB→BGR, minus the caffe means, ÷255,
what the RadImageNet scripts fed the network in training) and ends in a softmax: feed raw pixels, take log
probabilities for the loss. Do not normalise to [0, 1] or transpose to NCHW.

    pip install 'radtransfer[torch]' 'torch==2.13.0'   # the CPU build; any CUDA build works the same
    python examples/radimagenet_pytorch.py --quick                         # synthetic data, a smoke test
    python examples/radimagenet_pytorch.py --data /data/brain_tumor_mri/Training --weights-dir weights/
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radtransfer as rt  # noqa: E402

from _common import apply_quick, base_parser, load_images, pretrained  # noqa: E402


def read(image_set, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images as (N, size, size, 3) float32 in 0–255 and integer labels, read with Pillow (no TensorFlow)."""
    from PIL import Image

    images = []
    for path in image_set.paths:
        with Image.open(path) as image:
            pixels = np.asarray(image).astype(np.float32)
        if pixels.max() > 255:  # 16-bit grayscale: its own range to 0–255, as radtransfer's pipeline does
            pixels = (pixels - pixels.min()) / max(float(pixels.max() - pixels.min()), 1.0) * 255
        resized = np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR))
        if resized.ndim == 2:
            resized = np.repeat(resized[..., None], 3, axis=-1)
        images.append(resized[..., :3].astype(np.float32))
    return np.stack(images), image_set.labels.astype(np.int64)


def main(argv=None) -> int:
    import keras
    import torch

    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        raise SystemExit(f"This example needs KERAS_BACKEND=torch (Keras is on {keras.backend.backend()}).")
    if args.quick:  # sizes given are kept; one line says what --quick changed
        apply_quick(parser, args, argv, epochs=1, image_size=32, batch_size=8)

    images = load_images(args)
    train, val, _ = images.split(val=0.15, test=0.15, by="patient", seed=726)
    weights, source = pretrained("densenet121", args.weights_dir)
    model = rt.build_model(
        "densenet121",
        weights=weights,
        num_classes=images.num_classes,
        input_shape=(args.image_size, args.image_size, 3),
    )
    rt.apply_strategy(model, "unfreeze_all", bn="protocol")
    assert isinstance(model, torch.nn.Module)
    device = next(model.parameters()).device
    print(
        f"{type(model).__name__} is a torch.nn.Module on {device}; "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters ({source})"
    )

    x_train, y_train = read(train, args.image_size)
    x_val, y_val = read(val, args.image_size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(726),
    )
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    for epoch in range(args.epochs):
        model.train()
        total, seen = 0.0, 0
        for batch, labels in loader:
            batch, labels = batch.to(device), labels.to(device)
            probabilities = model(batch, training=True)
            loss = torch.nn.functional.nll_loss(torch.log(probabilities.clamp_min(1e-7)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(labels), seen + len(labels)
        model.eval()
        with torch.no_grad():
            predicted = model(torch.from_numpy(x_val).to(device), training=False).argmax(dim=1).cpu().numpy()
        print(
            f"epoch {epoch + 1}/{args.epochs}: train loss {total / seen:.4f}, "
            f"val accuracy {(predicted == y_val).mean():.3f} ({len(y_val)} images)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
