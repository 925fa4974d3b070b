/* SPDX-License-Identifier: MIT */
/*
 * Beltway: definitions shared by every public header.
 *
 * Every fallible call returns an int or ssize_t that is >= 0 on success and
 * -errno on failure. The thread-local bw_strerror_last() then holds one line
 * that says what was wrong, in words, for the failure this thread saw last.
 */
#ifndef BELTWAY_COMMON_H
#define BELTWAY_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BW_BUILDING_LIB)
#define BW_API __attribute__((visibility("default")))
#else
#define BW_API
#endif

/* Returns the message of the last failure of a Beltway call on this thread,
 * or "" when there was none. The pointer stays valid until the next failing
 * call on this thread. */
BW_API const char *bw_strerror_last(void);

/* Returns the library version as "MAJOR.MINOR.PATCH". */
BW_API const char *bw_version(void);

#ifdef __cplusplus
}
#endif
#endif
