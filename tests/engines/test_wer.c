/* The WER helper the integration tests reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/wer.h"

static void test_wer_basics(void **state)
{
    (void)state;
    assert_true(at_test_wer("hello world", "hello world") == 0.0);
    assert_true(at_test_wer("Hello, World!", "hello world") == 0.0);
    assert_true(at_test_wer("a b c d", "a x c d") == 0.25);    /* substitution */
    assert_true(at_test_wer("a b c d", "a c d") == 0.25);      /* deletion */
    assert_true(at_test_wer("a b c d", "a b c d e f") == 0.5); /* insertions */
    assert_true(at_test_wer("don't stop", "dont stop") == 0.5);
    assert_true(at_test_wer("", "") == 0.0);
    assert_true(at_test_wer("", "x") == 1.0);
    assert_true(at_test_wer(NULL, NULL) == 0.0);
    assert_true(at_test_wer("one two", "") == 1.0);
    assert_int_equal(at_test_word_count("  It's a   test, ok? "), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_wer_basics)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
