# Dyssect BESS plugin build, included from native/Makefile.
#   make -C native plugin BESS_DIR=/path/to/built/bess
# Builds build/plugin/dyssect.so against a built BESS tree (same flags as its bessd:
# C++17, -fPIC, the tree's core headers, the DPDK/glog/protobuf pkg-config flags) and
# writes each protobuf/<name>.proto's <name>_pb2.py into $(BESS_DIR)/pybess/plugin_pb/,
# where pybess scans for message types. The .so is linked with no libraries: bessd
# (-rdynamic) provides the BESS, DPDK, glog and protobuf symbols when it loads the plugin.
BESS_DIR ?= $(DYSSECT_BESS_SRC)
PLUGIN_OUT ?= build/plugin
override PLUGIN_OUT := $(abspath $(PLUGIN_OUT))
PLUGIN_SO := $(PLUGIN_OUT)/dyssect.so
# Every protobuf/*.proto: compiled into the .so and into pybess's plugin_pb.
PLUGIN_PROTOS := $(notdir $(basename $(wildcard protobuf/*.proto)))
PLUGIN_PB_HS := $(patsubst %,$(PLUGIN_OUT)/pb/%.pb.h,$(PLUGIN_PROTOS))
PLUGIN_PB_OS := $(patsubst %,$(PLUGIN_OUT)/pb/%.pb.o,$(PLUGIN_PROTOS))
PLUGIN_PY := $(patsubst %,$(BESS_DIR)/pybess/plugin_pb/%_pb2.py,$(PLUGIN_PROTOS))
PLUGIN_PROTOC ?= protoc
PLUGIN_CXX ?= g++
PLUGIN_CPU ?= native
PLUGIN_PKGS := libdpdk libglog protobuf
PLUGIN_CXXFLAGS = -std=c++17 -O3 -DNDEBUG -g -march=$(PLUGIN_CPU) -fPIC -D_GNU_SOURCE \
	-fno-gnu-unique -Wall -Wextra -Werror -Wno-deprecated-copy \
	-isystem $(BESS_DIR)/core -isystem $(BESS_DIR)/core/modules \
	-I$(CURDIR) -I$(PLUGIN_OUT) \
	$(shell pkg-config --cflags $(PLUGIN_PKGS))
PLUGIN_SRCS := $(wildcard modules/*.cc)
PLUGIN_HDRS := $(wildcard modules/*.h dyssect/*.h)

.PHONY: plugin plugin-check plugin-clean
# Keep the generated sources (make would delete them as intermediates).
.SECONDARY: $(PLUGIN_PB_HS) $(PLUGIN_PB_HS:.h=.cc)

# Fail before anything runs (the parent Makefile builds with -j2).
ifneq ($(filter plugin,$(MAKECMDGOALS)),)
  ifeq ($(BESS_DIR),)
    $(error BESS_DIR (or DYSSECT_BESS_SRC) must name a built BESS tree)
  endif
  ifeq ($(wildcard $(BESS_DIR)/core/bessd),)
    $(error $(BESS_DIR)/core/bessd not found: build BESS first)
  endif
endif

plugin: plugin-check $(PLUGIN_SO) $(PLUGIN_PY)

plugin-check:
	@test -n "$(BESS_DIR)" || { echo "BESS_DIR (or DYSSECT_BESS_SRC) must name a built BESS tree"; exit 2; }
	@test -x "$(BESS_DIR)/core/bessd" || { echo "$(BESS_DIR)/core/bessd not found: build BESS first"; exit 2; }

$(PLUGIN_OUT)/pb/%.pb.cc $(PLUGIN_OUT)/pb/%.pb.h: protobuf/%.proto
	@mkdir -p $(PLUGIN_OUT)/pb
	$(PLUGIN_PROTOC) --proto_path=protobuf --cpp_out=$(PLUGIN_OUT)/pb $<

$(PLUGIN_OUT)/pb/%.pb.o: $(PLUGIN_OUT)/pb/%.pb.cc
	$(PLUGIN_CXX) $(PLUGIN_CXXFLAGS) -Wno-error -c $< -o $@

$(PLUGIN_OUT)/%.o: modules/%.cc $(PLUGIN_HDRS) $(PLUGIN_PB_HS)
	@mkdir -p $(PLUGIN_OUT)
	$(PLUGIN_CXX) $(PLUGIN_CXXFLAGS) -c $< -o $@

$(PLUGIN_SO): $(patsubst modules/%.cc,$(PLUGIN_OUT)/%.o,$(PLUGIN_SRCS)) $(PLUGIN_PB_OS)
	$(PLUGIN_CXX) -shared -o $@ $^

$(BESS_DIR)/pybess/plugin_pb/%_pb2.py: protobuf/%.proto
	$(PLUGIN_PROTOC) --proto_path=protobuf --python_out=$(BESS_DIR)/pybess/plugin_pb $<

plugin-clean:
	rm -rf $(PLUGIN_OUT) $(PLUGIN_PY)
