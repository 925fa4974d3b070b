#include "helpers.h"
static void t(void) { CU_ASSERT(1); }
static void reg(void) { bwt_add("placeholder", t); }
int main(void) { return bwt_main("test_badinput", reg); }
