#!/usr/bin/env bash
# A short check of convscope on a CUDA GPU: train, evaluate, predict, inspect, transfer and detect on `--device "$DEVICE"`,
# stop a training with SIGTERM and resume it, train in one process per GPU (torchrun, NCCL, --sync-bn), and compare CPU
# and GPU answers on the same weights.
#
#     bench/gpu_smoke.sh [OUT_DIR]          (from the repository root, after `make setup`; about 3–5 minutes)
#     DEVICE=cpu bench/gpu_smoke.sh         (the same steps on the CPU: how the script itself is checked without a GPU)
#
# Needs no download: its image folders are drawn here (coloured shapes for classes, boxes for detection). Every step
# prints one line; the script stops at the first failing command (set -e). Exit 2 when there is no CUDA GPU.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/convscope-gpu-smoke}
DEVICE=${DEVICE:-cuda}
CS=("$PY" -m convscope)
rm -rf "$OUT" && mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "the GPU"
"$PY" - "$DEVICE" <<'EOF' || exit 2
import sys, torch
if sys.argv[1] == "cpu":
    sys.exit(print("DEVICE=cpu: the steps run on the CPU"))
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU: this check needs one")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
EOF

step "data: a 3-class image folder (64×64 shapes) and a detection set in YOLO format"
"$PY" - "$OUT" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw
out = Path(sys.argv[1]); rng = np.random.default_rng(0)
def canvas(size):
    return Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8))
for split, n in (("train", 300), ("test", 50)):
    for label, shape in enumerate(("circle", "square", "triangle")):
        folder = out / "shapes" / split / shape; folder.mkdir(parents=True)
        for i in range(n):
            im = canvas(64); d = ImageDraw.Draw(im)
            x, y, r = rng.integers(16, 48), rng.integers(16, 48), rng.integers(8, 15)
            colour = tuple(int(c) for c in rng.integers(120, 256, 3))
            if shape == "circle": d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
            elif shape == "square": d.rectangle([x - r, y - r, x + r, y + r], fill=colour)
            else: d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
            im.save(folder / f"{i:03}.png")
root = out / "boxes"
for split, n in (("train", 160), ("val", 40), ("test", 40)):
    (root / "images" / split).mkdir(parents=True); (root / "labels" / split).mkdir(parents=True)
    for i in range(n):
        im = canvas(128); d = ImageDraw.Draw(im); rows = []
        for _ in range(rng.integers(1, 4)):
            c = int(rng.integers(0, 2)); w, h = rng.integers(16, 40, 2); x, y = rng.integers(0, 128 - 40, 2)
            (d.rectangle if c == 0 else d.ellipse)([x, y, x + w, y + h], fill=(230, 60, 60) if c == 0 else (60, 200, 90))
            rows.append(f"{c} {(x + w / 2) / 128:.5f} {(y + h / 2) / 128:.5f} {w / 128:.5f} {h / 128:.5f}")
        im.save(root / "images" / split / f"{i:03}.png")
        (root / "labels" / split / f"{i:03}.txt").write_text("\n".join(rows) + "\n")
(root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: [box, blob]\n")
print("ok")
EOF

step "train on $DEVICE (precision auto), an uninterrupted reference run"
"${CS[@]}" train --model cifar-fast --data "$OUT/shapes" --epochs 6 --batch-size 64 --lr 0.05 --device "$DEVICE" --precision auto \
    --out "$OUT/whole"

step "the same run stopped by SIGTERM in epoch 3, then resumed"
"${CS[@]}" train --model cifar-fast --data "$OUT/shapes" --epochs 6 --batch-size 64 --lr 0.05 --device "$DEVICE" --precision auto \
    --out "$OUT/stopped" &
pid=$!
until [ -f "$OUT/stopped/metrics.csv" ] && [ "$(wc -l < "$OUT/stopped/metrics.csv")" -ge 3 ]; do sleep 0.2; done
kill -TERM $pid && wait $pid || echo "stopped with exit status $?"
"${CS[@]}" train --resume "$OUT/stopped"
"$PY" - "$OUT" <<'EOF'
import csv, sys
from pathlib import Path
rows = {n: list(csv.DictReader(open(Path(sys.argv[1]) / n / "metrics.csv"))) for n in ("whole", "stopped")}
diff = max(abs(float(a[k]) - float(b[k])) for a, b in zip(*rows.values()) for k in ("train_loss", "val_loss"))
print(f"resumed vs uninterrupted: {len(rows['stopped'])} epochs, largest loss difference {diff:.2e} "
      "(0 where cuDNN picks deterministic kernels; a few 1e-6 otherwise)")
EOF

step "torchrun: the reference run in N processes (one per GPU; 2 with DEVICE=cpu), batch 64 / N each"
N=$("$PY" -c "import sys, torch; print(2 if sys.argv[1] == 'cpu' else torch.cuda.device_count())" "$DEVICE")
if [ "$N" -ge 2 ]; then
    SYNC=(); [ "$DEVICE" = cpu ] || SYNC=(--sync-bn)  # SyncBatchNorm runs only on CUDA GPUs
    "${CS[@]}" train --nproc "$N" --model cifar-fast --data "$OUT/shapes" --epochs 6 --batch-size $((64 / N)) --lr 0.05 \
        --device "$DEVICE" --precision auto "${SYNC[@]}" --out "$OUT/ddp"
    "$PY" - "$OUT" "$N" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
acc = {n: json.loads((out / n / "results.json").read_text()) for n in ("whole", "ddp")}
print(f"1 process: test accuracy {acc['whole']['test_acc']:.4f} in {acc['whole']['train_seconds']:.1f} s; "
      f"{sys.argv[2]} processes: {acc['ddp']['test_acc']:.4f} in {acc['ddp']['train_seconds']:.1f} s "
      "(not equal: BatchNorm statistics and augmentation draws are per process)")
EOF
else
    echo "one GPU: torchrun's NCCL takes one GPU per process, so gradients cannot be exchanged here; skipped"
fi

step "evaluate and predict on $DEVICE and on cpu: the same weights should give the same answers"
"${CS[@]}" evaluate "$OUT/whole" --device "$DEVICE" --json > "$OUT/eval-gpu.json"
"${CS[@]}" evaluate "$OUT/whole" --device cpu --json > "$OUT/eval-cpu.json"
"${CS[@]}" predict "$OUT/whole" "$OUT/shapes/test/circle" --device "$DEVICE" --json > "$OUT/predict-gpu.json"
"${CS[@]}" predict "$OUT/whole" "$OUT/shapes/test/circle" --device cpu --json > "$OUT/predict-cpu.json"
"$PY" - "$OUT" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
acc = {d: json.loads((out / f"eval-{d}.json").read_text())["accuracy"] for d in ("gpu", "cpu")}
pred = {d: json.loads((out / f"predict-{d}.json").read_text()) for d in ("gpu", "cpu")}
same = sum(a["top"][0]["class"] == b["top"][0]["class"] for a, b in zip(pred["gpu"], pred["cpu"]))
gap = max(abs(a["top"][0]["probability"] - b["top"][0]["probability"]) for a, b in zip(pred["gpu"], pred["cpu"]))
print(f"test accuracy {sys.argv[2]} {acc['gpu']:.4f}, cpu {acc['cpu']:.4f}; top-1 agrees on {same}/{len(pred['cpu'])} "
      f"images; largest top-1 probability difference {gap:.2e}")
EOF

step "feature maps, Grad-CAM and top activations on $DEVICE"
"${CS[@]}" featuremaps "$OUT/whole" "$OUT/shapes/test/square/000.png" --device "$DEVICE" --out "$OUT/maps"
"${CS[@]}" gradcam "$OUT/whole" "$OUT/shapes/test/square/000.png" --device "$DEVICE" --out "$OUT/gradcam.png"
"${CS[@]}" top-activations "$OUT/whole" --layer conv1 --device "$DEVICE" --out "$OUT/top.png" || \
    echo "(top-activations: see the layer names in: convscope summary cifar-fast)"

step "transfer: the EfficientNet-Lite0 base, head then two blocks fine-tuned, on $DEVICE"
"${CS[@]}" transfer --data "$OUT/shapes" --image-size 96 --head-epochs 1 --finetune-epochs 1 --unfreeze-blocks 2 \
    --device "$DEVICE" --out "$OUT/transfer"

step "detect: train scenes-det briefly on $DEVICE, evaluate on $DEVICE and cpu"
"${CS[@]}" detect train --data "$OUT/boxes/data.yaml" --epochs 10 --device "$DEVICE" --out "$OUT/detector"
"${CS[@]}" detect evaluate "$OUT/detector" --device "$DEVICE"
"${CS[@]}" detect evaluate "$OUT/detector" --device cpu
"${CS[@]}" detect predict "$OUT/detector" "$OUT/boxes/images/test/000.png" --device "$DEVICE" --out "$OUT/detections"

step "export (ONNX) from the run trained on $DEVICE"
"${CS[@]}" export "$OUT/whole" --out "$OUT/whole.onnx"
printf '\nall steps ran: %s\n' "$OUT"
