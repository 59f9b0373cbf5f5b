/* libFuzzer target: the shared payload decoders (proto.c) used on guest
 * bytes by the host and on host bytes by the agent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= SBX_PROTO_HDR_SIZE) {
		struct sbx_frame_hdr h;
		if (sbx_hdr_unpack(data, &h) == 0 && h.len > SBX_PROTO_MAX_PAYLOAD)
			abort();
	}
	static const char *argv[SBX_EXEC_MAX_ARGS], *env[SBX_EXEC_MAX_ENV];
	static uint32_t al[SBX_EXEC_MAX_ARGS], el[SBX_EXEC_MAX_ENV];
	struct sbx_exec_start s = {.argv = argv, .argv_len = al, .env = env, .env_len = el};
	if (sbx_exec_start_decode(data, size, &s, SBX_EXEC_MAX_ARGS, SBX_EXEC_MAX_ENV) == 0) {
		/* every decoded string lies inside the input */
		for (uint32_t i = 0; i < s.argc; i++)
			if ((const uint8_t *)argv[i] < data ||
			    (const uint8_t *)argv[i] + al[i] > data + size)
				abort();
	}
	struct sbx_exit e;
	if (sbx_exit_decode(data, size, &e) == 0 && e.kind > 1)
		abort();
	/* file streams: decoded strings lie inside the input, and what
	 * decodes re-encodes to the same bytes */
	static uint8_t again[SBX_PROTO_MAX_PAYLOAD];
	struct sbx_file_entry fe;
	if (sbx_file_entry_decode(data, size, &fe) == 0) {
		if ((const uint8_t *)fe.name < data ||
		    (const uint8_t *)fe.name + fe.name_len > data + size ||
		    (const uint8_t *)fe.target + fe.target_len > data + size)
			abort();
		size_t n = sbx_file_entry_encode(again, sizeof again, &fe);
		if (n != size || memcmp(again, data, size))
			abort();
	}
	struct sbx_file_op_msg fo;
	if (sbx_file_op_decode(data, size, &fo) == 0) {
		size_t n = sbx_file_op_encode(again, sizeof again, &fo);
		if (n != size || memcmp(again, data, size))
			abort();
	}
	return 0;
}
