#!/usr/bin/env bash
# Build .whl/site312.tar.xz: the Python 3.12 packages that benchmarks/gpu/run_all.sh needs on a GPU host with no
# network and a CUDA image that lacks Ray, MLflow and Optuna. Packages the image already has are left out
# (HOST_HAS: their names, one per line), and so are parts nobody calls there (Ray's Java jars, RLlib, Serve,
# LLM; MLflow's web UI), which keeps the archive small (about 46 MB).
#   HOST_HAS=host_packages.txt bash benchmarks/gpu/build_site.sh
set -euo pipefail
PLATFORM=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=$(mktemp -d)
SITE=$(mktemp -d)/site312
python3 -m pip download -q "${PLATFORM[@]}" -d "$WHEELS" "ray[default,train,tune]==2.60.0" mlflow==3.17.2 optuna==5.0.0 \
    mlxtend tabulate filelock py-spy
normalise() { tr 'A-Z_.' 'a-z--'; }
skip=$( { cat "${HOST_HAS:-/dev/null}"; printf '%s\n' virtualenv distlib python-discovery platformdirs; } | normalise)
wanted=()
for wheel in "$WHEELS"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | normalise)
    grep -qx "$name" <<<"$skip" || wanted+=("$wheel")
done
python3 -m pip install -q --no-deps --no-compile "${PLATFORM[@]}" --target "$SITE" "${wanted[@]}"
# py-spy (stack dumps in exit_after_sigterm.py) is one binary that its wheel ships as a data script, which pip's
# --target leaves out: unpack it into the site's bin/, which run_all.sh puts on PATH
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); m = [n for n in z.namelist() if n.endswith("/scripts/py-spy")][0]; open(sys.argv[2], "wb").write(z.read(m))' \
    "$(ls "$WHEELS"/py_spy-*.whl)" "$SITE/bin/py-spy" && chmod +x "$SITE/bin/py-spy"
rm -rf "$SITE"/ray/{jars,rllib,serve,llm} "$SITE"/mlflow/server/js/build
find "$SITE" \( -name tests -o -name __pycache__ \) -type d -prune -exec rm -rf {} +
mkdir -p .whl
tar -cJf .whl/site312.tar.xz -C "$(dirname "$SITE")" site312
ls -la .whl/site312.tar.xz
