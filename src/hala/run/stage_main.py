"""Run one stage of a recipe from its resolved config (the subprocess `hala run` starts)."""

from __future__ import annotations

import json
import logging
import sys

from hala.children import exit_on_sigterm
from hala.data.manifest import OutputInUseError
from hala.data.units import RequestsFailed
from hala.run.stages import BY_NAME


def main(name: str, config_path: str) -> int:
    exit_on_sigterm()  # `hala run` stopping (or dying) cleans up like an exception: temp folders go
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = BY_NAME[name]
    with open(config_path, encoding="utf-8") as handle:
        config = stage.load("config").model_validate(json.load(handle))
    try:
        manifest = stage.load("function")(config)
    except OutputInUseError as exc:  # a folder in use or not writable: the message is the whole story
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RequestsFailed as exc:  # rows lost to engine errors: no manifest, so the chain stops here
        print(f"error: {exc}", file=sys.stderr)
        return RequestsFailed.exit_code
    print(json.dumps({"stage": name, "counts": manifest.counts, "metrics": getattr(manifest, "metrics", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
