/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bwi_ring.h"

static _Thread_local char last_msg[256];

int bwi_err(int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(last_msg) - 4)
		snprintf(last_msg + n, sizeof(last_msg) - (size_t)n, " (%s)",
			 strerror(err));
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
