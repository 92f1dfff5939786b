# Wire protocol (TriglavCrypto, TriglavProtocol): libFuzzer target and the seal/open benchmark.
# See docs/PROTOCOL.md and docs/BENCHMARKS.md.

FUZZ_SECONDS ?= 60
FUZZ_BUILD := .build-fuzz
FUZZ_BINARY := $(FUZZ_BUILD)/protocol-fuzz
FUZZ_CORPUS := $(FUZZ_BUILD)/corpus
FUZZ_SANITIZERS := fuzzer,address
PROTOCOL_MODULES := TriglavCore TriglavCrypto TriglavProtocol

.PHONY: fuzz fuzz-build fuzz-smoke protocol-bench

# The protocol modules are built by SwiftPM with fuzzer coverage (debug, so @testable works); the
# harness is compiled by swiftc with -parse-as-library so libFuzzer provides main().
fuzz-build: deps
	$(SWIFT) build --build-path $(FUZZ_BUILD) --target TriglavProtocol -Xswiftc -sanitize=$(FUZZ_SANITIZERS)
	$(SWIFT) build --build-path $(FUZZ_BUILD) --target TriglavCore -Xswiftc -sanitize=$(FUZZ_SANITIZERS)
	swiftc -sanitize=$(FUZZ_SANITIZERS) -parse-as-library -g -swift-version 6 \
	    -I $(FUZZ_BUILD)/debug/Modules -I Sources/CSodium \
	    Fuzz/ProtocolFuzz/ProtocolFuzz.swift \
	    $(foreach m,$(PROTOCOL_MODULES),$(FUZZ_BUILD)/debug/$(m).build/*.o) \
	    -lsodium -o $(FUZZ_BINARY)

# Runs the fuzzer for FUZZ_SECONDS (default 60) with bounded input size and memory.
fuzz: fuzz-build
	mkdir -p $(FUZZ_CORPUS)
	$(FUZZ_BINARY) $(FUZZ_CORPUS) -max_total_time=$(FUZZ_SECONDS) -max_len=1500 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1

# The brief run `make test` includes.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

EXTRA_TEST_TARGETS += fuzz-smoke

PROTOCOL_BENCH_BUILD := .build-bench
PROTOCOL_BENCH_BINARY := $(PROTOCOL_BENCH_BUILD)/protocol-bench
PROTOCOL_BENCH_PACKETS ?= 200000

# Release build of the protocol modules, then the benchmark harness (Benchmarks/ProtocolBench) with
# swiftc -O; a tiny C allocation counter is linked in to report allocations per packet.
protocol-bench: deps
	$(SWIFT) build -c release --build-path $(PROTOCOL_BENCH_BUILD) --target TriglavProtocol
	clang -O2 -c Benchmarks/ProtocolBench/alloc_counter.c -o $(PROTOCOL_BENCH_BUILD)/alloc_counter.o
	swiftc -O -swift-version 6 -I $(PROTOCOL_BENCH_BUILD)/release/Modules -I Sources/CSodium -I Benchmarks/ProtocolBench \
	    Benchmarks/ProtocolBench/main.swift $(PROTOCOL_BENCH_BUILD)/alloc_counter.o \
	    $(foreach m,$(PROTOCOL_MODULES),$(PROTOCOL_BENCH_BUILD)/release/$(m).build/*.o) \
	    -lsodium -o $(PROTOCOL_BENCH_BINARY)
	$(PROTOCOL_BENCH_BINARY) $(PROTOCOL_BENCH_PACKETS)
