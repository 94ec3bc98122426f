#!/usr/bin/env bash
# `make images`: build the generator and consumer images with docker build, then check that each
# answers --help in a container without a network (nothing to connect to, nothing needed).
# Where no Docker engine answers, says so in one line and exits 0.
# The base images must be in the engine, or pullable by it:
#   PYTHON_IMAGE (default python:3.11-slim-bookworm): both images' build and runtime stages
#   NODE_IMAGE   (default node:22-bookworm-slim): the generator's WebUI stage
# Without Docker Hub, make them locally (debootstrap + docker import): docs/IMAGES.md.
# IMAGE_TAG (default latest) tags the images; DOCKER_BUILD_ARGS is passed to docker build (for
# instance "--network host" for an engine started with --bridge=none).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON_IMAGE="${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
NODE_IMAGE="${NODE_IMAGE:-node:22-bookworm-slim}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
read -r -a build_args <<<"${DOCKER_BUILD_ARGS:-}"

if ! command -v docker >/dev/null 2>&1; then
  echo "make images: skipped: there is no docker command on PATH"
  exit 0
fi
if ! reason="$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null)"; then
  echo "make images: skipped: no Docker engine answers ($(head -n 1 <<<"$reason"))"
  exit 0
fi

for base in "$PYTHON_IMAGE" "$NODE_IMAGE"; do
  if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull --quiet "$base" >/dev/null; then
    echo "make images: the base image $base is neither in the engine nor pullable: make it" \
      "locally (docs/IMAGES.md) or name another one with PYTHON_IMAGE / NODE_IMAGE" >&2
    exit 1
  fi
done

echo "== docker build consumer:$IMAGE_TAG"
docker build "${build_args[@]}" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
  -t "consumer:$IMAGE_TAG" -f docker/Dockerfile.consumer .
echo "== docker build generator:$IMAGE_TAG"
docker build "${build_args[@]}" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
  --build-arg NODE_IMAGE="$NODE_IMAGE" -t "generator:$IMAGE_TAG" -f docker/Dockerfile.generator .

for service in consumer generator; do
  echo "== docker run $service:$IMAGE_TAG --help"
  out="$(docker run --rm --network none "$service:$IMAGE_TAG" --help)"
  grep -q '^usage: python -m '"$service"' ' <<<"$out" \
    || { echo "make images: $service:$IMAGE_TAG --help printed no usage:" >&2; echo "$out" >&2; exit 1; }
  echo "$service:$IMAGE_TAG: $(docker run --rm --network none "$service:$IMAGE_TAG" --version)"
done
echo "make images: consumer:$IMAGE_TAG and generator:$IMAGE_TAG built; both answer --help"
