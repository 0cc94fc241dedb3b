import json, sys, time
import torch
from amodalgen3d_ros.calibrate import calibrate
torch.set_num_threads(1)
t = time.time()
r = calibrate(sys.argv[1], views=(1, 2, 4))
out = {k: r[k] for k in ("level", "level_by_views", "hidden_offset_by_views", "confidence")}
out["seconds"] = round(time.time() - t)
print(json.dumps(out, indent=1))
