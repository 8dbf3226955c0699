# Thin wrapper over meson. Two build trees:
#   build-asan/     debug + AddressSanitizer + UndefinedBehaviorSanitizer (make test)
#   build-release/  optimized, asserts off: NDEBUG, meson.build b_ndebug=if-release (make bench, make run)
.PHONY: all deps test-deps bench-deps web test bench run format clean

ASAN_DIR    := build-asan
RELEASE_DIR := build-release
WEB_DIR     := build-web

all: deps $(RELEASE_DIR)/build.ninja
	meson compile -C $(RELEASE_DIR)

deps:
	@./tools/install-deps

test-deps:
	@./tools/install-deps --test

bench-deps:
	@./tools/install-deps --bench

# The web front end (docs/web.md): npm ci fills web/node_modules from web/package-lock.json
# (again only when the lock file changes); web/build.sh copies web/src and the charting
# library into $(WEB_DIR), which usherd serves.
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web: deps web/node_modules/.package-lock.json
	./web/build.sh $(WEB_DIR)

$(ASAN_DIR)/build.ninja:
	meson setup $(ASAN_DIR) --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fno-sanitize-recover=all

$(RELEASE_DIR)/build.ninja:
	meson setup $(RELEASE_DIR) --buildtype=release

# The release tree is compiled too: -O3 finds warnings (format truncation)
# that -O0 does not, and make run depends on it.
test: test-deps web $(ASAN_DIR)/build.ninja $(RELEASE_DIR)/build.ninja
	meson compile -C $(RELEASE_DIR)
	meson compile -C $(ASAN_DIR)
	meson test -C $(ASAN_DIR) --print-errorlogs --num-processes 2

# The server benchmark starts nginx and usherd on loopback ports and drives both with
# usher-bench (bench/README.md, "Server benchmark: usherd vs nginx").
bench: all bench-deps
	./$(RELEASE_DIR)/bench/engine-bench
	./$(RELEASE_DIR)/bench/replay-bench
	./bench/server-bench.sh
	./bench/pgexport-bench.sh

run: all web
	@echo "usherd: Ctrl-C stops it (final snapshots, WAL sync); data in ./data"
	@echo "usherd: the first start creates a demo catalog and prints two accounts' passwords"
	@echo "usherd: rate limits at their defaults (docs/api.md, Rate limits)"
	@echo "usherd: the booking pages and the admin dashboard: http://127.0.0.1:8080/ (docs/web.md)"
	./$(RELEASE_DIR)/net/usherd --listen 127.0.0.1:8080 --data-dir ./data --demo --web-root ./$(WEB_DIR)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(ASAN_DIR) $(RELEASE_DIR) $(WEB_DIR) web/node_modules
