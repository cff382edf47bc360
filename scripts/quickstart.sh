#!/usr/bin/env bash
# Install, then run the main job end to end on the embedded default (the synthetic source).
# Everything lands in ./quickstart-out (replaced on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# A development checkout sits beside ../shared, which holds the Surrey Face Model; elsewhere the
# synthetic source uses $MVDATA_FACE_MODEL_DIR, the user cache, or its built-in procedural face.
if [ -z "${MVDATA_FACE_MODEL_DIR:-}" ] && [ -f ../shared/facemodels/sfm/sfm_shape_3448.bin ]; then
  export MVDATA_FACE_MODEL_DIR="$PWD/../shared/facemodels/sfm"
fi
OUT=quickstart-out
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. synthetic 3D/4D faces: the Surrey Face Model (SFM) when its files are found, else a cruder"
echo "   built-in procedural face. Get the SFM with: mvdata face-model download (free for NON-COMMERCIAL"
echo "   use only; it prints the terms first), or point MVDATA_FACE_MODEL_DIR at its files."
mvdata synth "$OUT/synth" --identities 20 --sequences --frames 25 --seed 0

echo "== 2. render multiview shards (3 views: 0, -20, +20 deg yaw; rgb + depth + normals; 112 px here, 224 px by default)"
mvdata build "$OUT/synth" "$OUT/shards" --source synthetic --kind static --samples-per-shard 32 \
  --image-size 112

echo "== 3. 4D clips (8 frames x 3 views, sampled around the peak of motion)"
mvdata build "$OUT/synth" "$OUT/clips" --source synthetic --kind sequence --clip-frames 8 \
  --clip-sampling motion --image-size 112 --samples-per-shard 8

echo "== 4. verify every byte"
mvdata verify "$OUT/shards"
mvdata verify "$OUT/clips"

echo "== 5. summary and a contact sheet to look at"
mvdata info "$OUT/shards" --contact-sheet "$OUT/shards-contact-sheet.png"
mvdata info "$OUT/clips" --contact-sheet "$OUT/clips-contact-sheet.png"

echo "== 6. load the shards as training batches ([B, T, V, C, H, W]; DALI, on the CPU here)"
mvdata loader-bench "$OUT/shards" --batch-size 16 --steps 8
mvdata loader-bench "$OUT/clips" --batch-size 4 --steps 8

echo "== 7. train MultiviewVLM on the static shards (CPU: random-init ResNet-18 over the 3 views,"
echo "   64 px, rgb + depth + normals, 385 steps: 4-10 min on 2 cores; pseudo-labels from the prompts and the"
echo "   3D-landmark prior; no label used). The subjects of folds 0-2 (6 of 20) are held out: the"
echo "   loader never reads them, so step 9 can evaluate on subjects the model never saw."
mvmodel train "$OUT/shards" --out "$OUT/run" --config configs/cpu.yaml \
  model.image_size=64 optim.epochs=35 data.batch_size=32 optim.warmup_steps=20 \
  'data.exclude_folds=[0,1,2]' data.skip_excluded=true \
  text.prompts.max_per_class=32 run.log_every=5 run.checkpoint_every=100
mvmodel plot "$OUT/run"

echo "== 8. embed every sample into LanceDB ($OUT/lancedb, table faces), then query it: the faces"
echo "   nearest to one face, the faces nearest to a text (through the text tower), a picture of hits"
mvmodel embed "$OUT/run" "$OUT/shards" --db "$OUT/lancedb" --table faces
mvmodel search similar --key synthetic_S0001_HA04 --db "$OUT/lancedb" --table faces --limit 10
mvmodel search similar --key synthetic_S0001_HA04 --db "$OUT/lancedb" --table faces --limit 6 \
  --format png --png-out "$OUT/similar-S0001_HA04.png"
mvmodel search text "a face showing surprise" --db "$OUT/lancedb" --table faces --limit 10
echo "   precision@10 of a text query per emotion (a MEASUREMENT with the held-back labels; the"
echo "   model never saw them):"
python - "$OUT/lancedb" <<'PY'
import sys

from mvmodel.store.search import text_search
from mvmodel.store.table import connect, open_table

db = sys.argv[1]
table, info = open_table(connect(db), "faces", db)
emotions = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
line = []
for e in emotions:
    hits = text_search(table, info, f"a face showing {e}", limit=10)
    line.append(f"{e} {sum(h['expression'] == e for h in hits) / len(hits):.1f}")
chance = table.count_rows("expression = 'anger'") / table.count_rows()
print("   precision@10: " + ", ".join(line) + f" (chance: {chance:.2f})")
PY

echo "== 9. evaluate on the held-out subjects (folds 0-2, intensities 3-4): linear probe, kNN,"
echo "   zero-shot, k-means, the geometry-alone floor; a report with plots (labels are read here only)"
mvmodel evaluate "$OUT/run" "$OUT/shards" --out "$OUT/report" --protocol bu3dfe --subjects all

echo
echo "quickstart done; everything is under $OUT/:"
echo "  synth/   synthetic meshes + metadata.parquet     shards/, clips/   WebDataset tars (+ .idx, parquet, stats)"
echo "  *-contact-sheet.png   rendered views to look at"
echo "  run/     the training run: model.safetensors, config.yaml, log.jsonl, curves.png, checkpoints/"
echo "  lancedb/ the embeddings (table faces: mvmodel search ...); similar-S0001_HA04.png: hits to look at"
echo "  report/  report.md + report.json + PNGs: the held-out evaluation (a toy budget: the benchmark's"
echo "           numbers come from mvmodel benchmark, see the README)"
echo "  the face model used is named in synth/synth.json (\"face_model\": sfm_shape_3448 or procedural)"
