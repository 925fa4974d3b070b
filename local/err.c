/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bwi_ring.h"

static _Thread_local char last_msg[256];

/* Formats into a buffer of its own first: a caller may pass the last
 * message, bw_strerror_last(), as an argument of the next. */
int bwi_err(int err, const char *fmt, ...)
{
	char msg[sizeof(last_msg)];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(msg) - 4)
		snprintf(msg + n, sizeof(msg) - (size_t)n, " (%s)",
			 strerror(err));
	memcpy(last_msg, msg, sizeof(last_msg));
	return -err;
}

void bwi_err_clear(void)
{
	last_msg[0] = '\0';
}

BW_API const char *bw_strerror_last(void)
{
	return last_msg;
}

BW_API const char *bw_version(void)
{
	return PACKAGE_VERSION;
}
