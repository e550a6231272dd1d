# The two set-up commands: `make demo` and `make test`. Each creates .venv (Python 3.11) when absent and
# installs the project into it with every version pinned (constraints.txt), then runs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-out

.PHONY: demo test bench clean

# vla-data carries vla_client (from client/vla_client), so one editable install gives both; a .venv made when
# the client was installed beside it as vla-data-client loses that second copy.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip uninstall --quiet --disable-pip-version-check -y vla-data-client
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/vla-data make-synthetic $(DEMO)/raw --episodes 24 --image-size 120x214 --seed 0
	$(BIN)/vla-data validate $(DEMO)/raw --json $(DEMO)/validate.json
	$(BIN)/vla-data make-synthetic $(DEMO)/defective --episodes 4 --image-size 120x214 --seed 1 --defects
	@echo "--- the same check on a folder with one defective file per finding class (exits 1 by design) ---"
	$(BIN)/vla-data validate $(DEMO)/defective --deep; test $$? -eq 1
	$(BIN)/vla-data build-splits $(DEMO)/raw -o $(DEMO)/dataset.zarr --image-size 56 --workers 2
	@echo "--- the store is managed, not rebuilt: add an episode, remove one, relabel one (each a new version) ---"
	$(BIN)/vla-data make-synthetic $(DEMO)/day2 --episodes 1 --image-size 120x214 --seed 5
	$(BIN)/vla-data build-splits $(DEMO)/raw $(DEMO)/day2 -o $(DEMO)/dataset.zarr --image-size 56
	$(BIN)/vla-data remove $(DEMO)/dataset.zarr "$$($(BIN)/python -c "from vla_data.store.reader import open_store; \
	    t = open_store('$(DEMO)/dataset.zarr').episodes; print(t[t.split == 'train'].episode.iloc[0])")"
	$(BIN)/vla-data relabel $(DEMO)/dataset.zarr 1 --instruction "$$($(BIN)/python -c "from vla_data.store.reader \
	    import open_store; print(open_store('$(DEMO)/dataset.zarr').episodes.instruction.iloc[1] + ', slowly')")"
	$(BIN)/vla-data info $(DEMO)/dataset.zarr --verify --plot $(DEMO)/dataset.png
	$(BIN)/vla-data log $(DEMO)/dataset.zarr
	$(BIN)/vla-data tag $(DEMO)/dataset.zarr demo-train
	$(BIN)/vla-data inspect-sample $(DEMO)/dataset.zarr --index 3 --out $(DEMO)/sample.png
	$(BIN)/vla-data train $(DEMO)/dataset.zarr -o $(DEMO)/run --model tiny-random --max-steps 300 --window 4 \
	    --chunk 4 --batch-size 16 --lr 2e-3 --hidden 64 --lora-r 8 --augment mirror --val-every 100 --save-every 100
	@echo "--- a new recording lands after training; the first checkpoint kept is scored on the version it trained on ---"
	$(BIN)/vla-data make-synthetic $(DEMO)/day3 --episodes 1 --image-size 120x214 --seed 6
	$(BIN)/vla-data build-splits $(DEMO)/raw $(DEMO)/day2 $(DEMO)/day3 -o $(DEMO)/dataset.zarr --image-size 56
	$(BIN)/vla-data eval "$$(ls -d $(DEMO)/run/checkpoint-* | sort -t- -k2 -n | head -1)" $(DEMO)/dataset.zarr@demo-train \
	    --split val -o $(DEMO)/eval-first
	$(BIN)/vla-data diff $(DEMO)/dataset.zarr demo-train
	@echo "--- the PolicyRunner replays one recorded episode frame by frame, as on the robot ---"
	$(BIN)/vla-data predict $(DEMO)/run "$$(ls $(DEMO)/raw/*.h5 | head -1)"
	@echo "--- the policy against the train-mean and zero-velocity baselines on the val split ---"
	$(BIN)/vla-data eval $(DEMO)/run $(DEMO)/dataset.zarr --split val -o $(DEMO)/eval --rrd $(DEMO)/eval/worst.rrd
	@echo "--- the val episodes with the policy's predictions, as a Rerun recording (rerun $(DEMO)/val.rrd) ---"
	$(BIN)/vla-data view $(DEMO)/dataset.zarr --split val --max-episodes 4 --run $(DEMO)/run --save $(DEMO)/val.rrd
	@echo "--- vla-data serve + the robot-side client drive one val episode (ensemble execution), with the latency ---"
	$(BIN)/vla-data drive "$$($(BIN)/python -c "from vla_data.store.reader import open_store; t = open_store('$(DEMO)/dataset.zarr').episodes; \
	    print(t[t.split == 'val'].source_path.iloc[0])")" --serve $(DEMO)/run --execution ensemble --snap
	@echo "--- the policy exported to ONNX for the robot's own computer, and the same val episode driven through it (no torch) ---"
	$(BIN)/vla-data export $(DEMO)/run -o $(DEMO)/policy
	$(BIN)/vla-data drive "$$($(BIN)/python -c "from vla_data.store.reader import open_store; t = open_store('$(DEMO)/dataset.zarr').episodes; \
	    print(t[t.split == 'val'].source_path.iloc[0])")" --policy $(DEMO)/policy --execution ensemble --snap
	@echo "--- the same scenes recorded as ROS 2 bags (sqlite3 and MCAP, Image and CompressedImage): built, scored ---"
	$(BIN)/vla-data make-synthetic $(DEMO)/bags --episodes 8 --image-size 120x214 --seed 2 --format rosbag2
	$(BIN)/vla-data validate $(DEMO)/bags
	$(BIN)/vla-data build-splits $(DEMO)/bags -o $(DEMO)/bags.zarr --image-size 56 \
	    --camera-topic /camera/image_raw --command-topic /cmd_vel
	$(BIN)/vla-data predict $(DEMO)/run "$$(ls -d $(DEMO)/bags/episode_* | head -1)"
	$(BIN)/vla-data eval $(DEMO)/run $(DEMO)/bags.zarr --split val -o $(DEMO)/eval-bags
	@echo "--- the trained-on version as a LeRobot dataset (v3.0, PNG frames), and built back into a store from it ---"
	$(BIN)/vla-data export-lerobot $(DEMO)/dataset.zarr@demo-train -o $(DEMO)/lerobot --fps 2 --robot-type synthetic
	$(BIN)/vla-data build-splits $(DEMO)/lerobot -o $(DEMO)/from-lerobot.zarr --image-size 56 \
	    --frames-key observation.images.rgb --color-order rgb --actions-key action --action-dim 2 \
	    --split-file $(DEMO)/lerobot/meta/splits.csv
	$(BIN)/vla-data info $(DEMO)/from-lerobot.zarr

bench: $(STAMP)
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/build.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/view.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/train_gpu.py
	$(BIN)/python benchmarks/learning.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/heads.py
	$(BIN)/python benchmarks/lerobot.py
	test -d ../wt-baseline || git worktree add ../wt-baseline d30fe39
	$(BIN)/python benchmarks/history.py --baseline-tree ../wt-baseline

clean:
	rm -rf $(VENV) $(DEMO) bench-out
