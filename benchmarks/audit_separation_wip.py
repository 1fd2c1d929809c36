import tempfile, pathlib, io
import numpy as np
from PIL import Image
import radtransfer as rt
from radtransfer import data
from radtransfer.data.audit import _pixels, _grey, perceptual_hashes, _thumbnail

d = pathlib.Path(tempfile.mkdtemp())
rt.datasets.synthetic_brain_mri(d, n_patients=60, slices_per_patient=4, image_size=128, seed=1)
s = data.from_csv(d / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
paths = list(s.paths)


def thumb(g, n=64):
    t = np.asarray(Image.fromarray(g, mode="F").resize((n, n), Image.Resampling.LANCZOS), dtype=np.float64)
    t = t - t.mean()
    return t / (np.linalg.norm(t) + 1e-9)


greys = [_grey(_pixels(p, "middle")) for p in paths]
T = np.stack([thumb(g) for g in greys]).reshape(len(paths), -1)
H = perceptual_hashes(np.stack([_thumbnail(g) for g in greys]))
C = T @ T.T
pid = np.array(s.patient_ids)
diff = pid[:, None] != pid[None, :]
close = (np.bitwise_count(H[:, None] ^ H[None, :]) <= 8) & diff
print(
    "pairs of different patients with phash<=8:",
    close.sum() // 2,
    "corr max",
    C[close].max() if close.any() else None,
    "corr all diff-patient max",
    C[diff].max(),
)
# planted alterations
img = Image.open(paths[5]).convert("L")
a = np.asarray(img).astype(np.float32)
alts = {}
b = io.BytesIO()
img.save(b, "JPEG", quality=75)
alts["jpeg75"] = np.asarray(Image.open(b)).astype(np.float32)
alts["resize"] = np.asarray(img.resize((100, 100)).resize((128, 128))).astype(np.float32)
alts["bright"] = np.clip(a + 20, 0, 255)
w = 128
c = 4
alts["crop3%"] = np.asarray(img.crop((c, c, w - c, w - c))).astype(np.float32)
c = 6
alts["crop5%"] = np.asarray(img.crop((c, c, w - c, w - c))).astype(np.float32)
t0 = thumb(a)
h0 = perceptual_hashes(_thumbnail(a)[None])[0]
for k, v in alts.items():
    print(
        k,
        "corr",
        float(thumb(v).ravel() @ t0.ravel()),
        "phash",
        int(np.bitwise_count(h0 ^ perceptual_hashes(_thumbnail(v)[None])[0])),
    )
