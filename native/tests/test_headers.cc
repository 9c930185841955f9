// Every public header compiles on its own.
#include "dyssect/checksum.h"
#include "dyssect/common.h"
#include "dyssect/cpu_nf.h"
#include "dyssect/flow_key.h"
#include "dyssect/flow_table.h"
#include "dyssect/migration.h"
#include "dyssect/nat.h"
#include "dyssect/nf_state.h"
#include "dyssect/shard.h"
#include "dyssect/spsc_ring.h"
#include "dyssect/toeplitz.h"
#include "test.h"

TEST(headers_compile) { CHECK(dyssect::IsPowerOfTwo(64)); }
