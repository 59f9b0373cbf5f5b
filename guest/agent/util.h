/* Small helpers shared by the agent's modules. */
#ifndef AGENT_UTIL_H
#define AGENT_UTIL_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds: every deadline in the agent (exec timeouts, the
 * drain window, reconnect retries) is measured on this clock, so a guest
 * wall-clock jump (e.g. set by a command) cannot fire or stall them. */
static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleep without caring about signals: only used while nothing else can
 * happen yet (waiting for the port device to appear). */
static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

#endif
