# Sourced by the benchmarks/gpu_*.sh device scripts: the device image lacks hydra-core/omegaconf, so
# install the carried wheels (.whl, see README "GPU workflow") into /tmp/site and put this checkout first.
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg COLUMNS=${COLUMNS:-200} TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-16}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .whl/*.tar.gz 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
_t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - _t0 )) s] $*"; }
