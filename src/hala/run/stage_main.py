"""Run one stage of a recipe from its resolved config (the subprocess `hala run` starts).

It exits as the stage's `hala` command would (`hala.exit_status`), and `hala run` exits with that."""

from __future__ import annotations

import json
import logging
import sys

from hala.children import exit_on_sigterm
from hala.exit_status import exit_code
from hala.run.stages import BY_NAME


def main(name: str, config_path: str) -> int:
    exit_on_sigterm()  # `hala run` stopping (or dying) cleans up like an exception: temp folders go
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = BY_NAME[name]
    with open(config_path, encoding="utf-8") as handle:
        data = json.load(handle)
    try:
        manifest = stage.load("function")(stage.load("config").model_validate(data))
    except Exception as error:  # the CLI's one rule: an error hala explains is one line and its status
        code = exit_code(error)
        if code is None:
            raise
        print(f"error: {error}", file=sys.stderr)  # rows lost to engine errors (3): no manifest, the chain stops
        return code
    print(json.dumps({"stage": name, "counts": manifest.counts, "metrics": getattr(manifest, "metrics", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
