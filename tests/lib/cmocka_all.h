/* cmocka wants these headers first; every test includes this one instead. */
#ifndef RD_TEST_CMOCKA_ALL_H
#define RD_TEST_CMOCKA_ALL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
