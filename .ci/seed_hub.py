"""CI, under the latest datasets: push two exports, OLD then NEW, to the dataset repository ci/claudesidian-kto
of a fake Hub kept in STORAGE, through the CLI as a user runs it, and record the commit of each in
STORAGE/pushed.json. The version matrix (tests/compat/test_hub_cell.py) serves STORAGE again and loads every
config and split by repository id (NEW) and by pinned revision (NEW, and OLD, which the head no longer holds).

usage: python .ci/seed_hub.py STORAGE OLD NEW
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from fake_hub import FakeHub  # noqa: E402

REPO_ID, TOKEN = "ci/claudesidian-kto", "hf_ci"


def main(storage: str, *folders: str) -> None:
    hub = FakeHub(tokens={TOKEN: "ci"}, storage=storage)
    pushes = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
            env.update({"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": os.path.join(scratch, "home")})
            for number, folder in enumerate(folders):
                copy = shutil.copytree(folder, os.path.join(scratch, str(number)))  # push rewrites the copy's card
                result = subprocess.run([sys.executable, "-m", "claudesidian_tools", "push", copy, REPO_ID],
                                        env=env, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    sys.exit(f"seed_hub: pushing {folder} failed: {result.stderr.strip()}")
                sha = result.stdout.split()[1]
                pushes.append({"folder": os.path.abspath(folder), "sha": sha})
                print(f"pushed {folder} to {REPO_ID} at {sha}")
    finally:
        hub.close()
    if hub.unanswered:
        sys.exit(f"seed_hub: the fake Hub could not answer {hub.unanswered}")
    with open(os.path.join(storage, "pushed.json"), "w", encoding="utf-8") as file:
        json.dump({"repo_id": REPO_ID, "pushes": pushes}, file, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
