/* SPDX-License-Identifier: MIT */
/* Beltway: the umbrella header. */
#ifndef BELTWAY_H
#define BELTWAY_H

#include <beltway/common.h>
#include <beltway/stream.h>
#include <beltway/index.h>
#include <beltway/fabric.h>
#include <beltway/shadow.h>

#endif
