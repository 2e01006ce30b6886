# The two entry points of README.md: `make demo` (a real search) and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.automl-installed

.PHONY: setup demo test lint bench images compose-demo compose-down

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/automl search --space search_spaces/fashion_mnist_cpu.toml --timeout 540 --time-budget 540

# Lint and types first, so that pytest's summary is the last line of the run. pytest runs two
# processes (one per core); the worker-pool tests stay in one of them (xdist group "pg-workers");
# the 20 slowest tests are listed before the summary, so that a slow one is seen where it lands.
test: $(STAMP) images
	bash scripts/ensure_postgres.sh
	$(BIN)/ruff check .
	$(BIN)/mypy automl workers tests
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=20

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy automl workers tests

# The compose stack's images, built offline (docker's data root caches them: minutes the first
# time, seconds after). Not fatal: where docker cannot run, the compose test says so and skips.
images:
	nice -n 10 bash scripts/docker_images.sh || echo "make: docker images not built; the compose test will say why"

# The worker pool by hand: PostgreSQL, the read-only dashboard on http://127.0.0.1:8080 and two
# CPU workers on the smoke space. A password is made once into docker/.env (git-ignored).
DEMO_ENV := AUTOML_STUDY=smoke AUTOML_SPACE=search_spaces/smoke.toml AUTOML_N_TRIALS=12 \
	AUTOML_DEVICE=cpu AUTOML_POSTGRES_IMAGE=automl-postgres:15 AUTOML_DATA_DIR=/tmp
COMPOSE := docker-compose -p automl -f docker/compose.yaml --env-file docker/.env

docker/.env:
	sed "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')/" \
		docker/.env.example > $@
	chmod 600 $@

compose-demo: images docker/.env
	bash scripts/dockerd.sh start
	$(DEMO_ENV) $(COMPOSE) up -d --scale worker=2
	@echo "dashboard: http://127.0.0.1:8080   follow: $(COMPOSE) logs -f worker   stop: make compose-down"

compose-down:
	$(DEMO_ENV) $(COMPOSE) down
	bash scripts/dockerd.sh stop
