// GoogleTest assertions for Result/Status values: on failure they print the Error.
#pragma once

#include <gtest/gtest.h>

#include "base/error.h"

// ASSERT_OK(expr): expr is a Result<T> or Status that must hold a value.
#define ASSERT_OK(expr)                                                     \
  do {                                                                      \
    auto&& strata_ok_ = (expr);                                             \
    ASSERT_TRUE(strata_ok_.has_value()) << strata_ok_.error().ToString();   \
  } while (0)

// ASSERT_OK_AND_ASSIGN(lhs, expr): asserts expr holds a value and moves it into lhs
// (`auto x` or an existing variable).
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                                                     \
  auto STRATA_CONCAT(result_, __LINE__) = (expr);                                                           \
  ASSERT_TRUE(STRATA_CONCAT(result_, __LINE__)) << STRATA_CONCAT(result_, __LINE__).error().ToString();     \
  lhs = std::move(*STRATA_CONCAT(result_, __LINE__))
