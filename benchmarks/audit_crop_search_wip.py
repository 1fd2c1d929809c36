import tempfile, pathlib, io, sys
import numpy as np
from PIL import Image
import radtransfer as rt
from radtransfer import data

N = int(sys.argv[1]) if len(sys.argv) > 1 else 32
d = pathlib.Path(tempfile.mkdtemp())
rt.datasets.synthetic_brain_mri(d, n_patients=60, slices_per_patient=4, image_size=128, seed=1)
s = data.from_csv(d / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
paths = list(s.paths)


def crop(a, l, t, r, b):
    h, w = a.shape
    return a[int(round(t * h)) : h - int(round(b * h)), int(round(l * w)) : w - int(round(r * w))]


def thumb(g, n=N):
    t = np.asarray(
        Image.fromarray(np.ascontiguousarray(g), mode="F").resize((n, n), Image.Resampling.BOX), dtype=np.float64
    )
    t = t - t.mean()
    return (t / (np.linalg.norm(t) + 1e-9)).ravel()


M = [0, 0.03, 0.06]


def variants(g):
    out = []
    for l in M:
        for t in M:
            for r in M:
                for b in M:
                    out.append(thumb(crop(g, l, t, r, b)))
    return np.stack(out)


greys = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths]
B = np.stack([thumb(g) for g in greys])
pid = np.array(s.patient_ids)
diff = pid[:, None] != pid[None, :]
C = B @ B.T
print("base corr, different patients: max", C[diff].max(), "99.9pct", np.quantile(C[diff], 0.999))
V = [variants(g) for g in greys[:40]]
best = np.array([[(V[i] @ B[j]).max() for j in range(len(B))] for i in range(40)])
print("variant-vs-base corr, different patients (40 queries): max", best[diff[:40]].max())
img = greys[5]
alts = {"jpeg75": None}
b = io.BytesIO()
Image.fromarray(img.astype(np.uint8)).save(b, "JPEG", quality=75)
alts["jpeg75"] = np.asarray(Image.open(b), dtype=np.float32)
alts["resize"] = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((90, 90)), dtype=np.float32)
alts["bright+contrast"] = np.clip(img * 1.1 + 15, 0, 255)
for m in (0.02, 0.03, 0.05, 0.07):
    alts[f"crop{m}"] = crop(img, m, m, m, m)
alts["crop left 4%"] = crop(img, 0.04, 0, 0, 0)
alts["crop tl 5%"] = crop(img, 0.05, 0.05, 0, 0)
v0 = variants(img)
for k, a in alts.items():
    print(
        k,
        "base",
        round(float(thumb(a) @ B[5]), 4),
        "best variant",
        round(float(max((v0 @ thumb(a)).max(), (variants(a) @ B[5]).max())), 4),
    )
