# Sourced by chain.sh, chain2700.sh and chain2700_ref.sh (run from the repository's root): the
# steps the three runs share. A decoder copy's folder under runs/budget names the bench's label.
R=runs/budget
stamp() { echo "$1 $(date -u +%s) $(date -u)" >> $R/s31_times.log; }
train_decoder() {  # scenes, steps, out folder: fresh decoder scenes (seed 5), trained on the budget generator's fields
  .venv/bin/amodalgen3d synth --out data/decoder_train --scenes "$1" --seed 5 --split train --workers 2 > $R/s31_synth$1.log 2>&1
  stamp "decoder$1_start"
  .venv/bin/amodalgen3d train --mode decoder --init $R/flow/flow.safetensors --scenes "$1" --steps "$2" \
    --threads 2 --out "$3" > $R/s31_decoder$1.log 2>&1
}
calibrate_copy() {  # network, decoder file, copy folder, threads: a copy per network (calibration lives in it)
  mkdir -p "$R/$3"
  cp "$2" "$R/$3/decoder.safetensors"
  OMP_NUM_THREADS="$4" .venv/bin/amodalgen3d calibrate "$1" --views 1,2,4 --decoder "$R/$3/decoder.safetensors" \
    > "$R/s31_calib_$3.json"
}
bench120() {  # out folder name, methods: the 120 held-out scenes at 1, 2 and 4 views
  .venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
    --methods "$2" --workers 2 --out "$R/$1" > "$R/$1.log" 2>&1
}
