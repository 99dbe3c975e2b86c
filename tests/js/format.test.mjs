// node --test: the page's money formatting from integer micros (no floats) and amount parsing.
import assert from "node:assert/strict";
import { test } from "node:test";

import { countOf, formatCount, formatCredits, formatUsd, parseUsd, toMicros } from "../../gateway/sidecar/static/js/format.js";

test("credits are exact and grouped", () => {
  assert.equal(formatCredits(10_000_000), "10,000");
  assert.equal(formatCredits(1500), "1.5");
  assert.equal(formatCredits(1), "0.001");
  assert.equal(formatCredits(0), "0");
  assert.equal(formatCredits(-9_990), "-9.99");
  assert.equal(formatCredits("9007199254740993"), "9,007,199,254,740.993"); // past 2**53: still exact
});

test("dollars show at least cents and every micro", () => {
  assert.equal(formatUsd(10_000_000), "$10.00");
  assert.equal(formatUsd(123), "$0.000123");
  assert.equal(formatUsd(1_234_567_891), "$1,234.567891");
  assert.equal(formatUsd(-1_500_000), "-$1.50");
});

test("a float or a fraction of a micro is refused", () => {
  assert.throws(() => toMicros(0.1), TypeError);
  assert.throws(() => toMicros("1.5"), TypeError);
  assert.equal(toMicros(7n), 7n);
});

test("typed amounts become exact micros", () => {
  assert.equal(parseUsd("10"), 10_000_000n);
  assert.equal(parseUsd(" $12.5 "), 12_500_000n);
  assert.equal(parseUsd("0.000001"), 1n);
  for (const bad of ["", "ten", "-1", "1e3", "1.0000001", "1,000", "0x10"]) {
    assert.throws(() => parseUsd(bad), RangeError, bad);
  }
});

test("counts are grouped", () => {
  assert.equal(formatCount(1234567), "1,234,567");
});

test("a count of one is singular", () => {
  assert.equal(countOf(1, "call"), "1 call");
  assert.equal(countOf(1n, "day"), "1 day");
  assert.equal(countOf(0, "call"), "0 calls");
  assert.equal(countOf(1200, "call"), "1,200 calls");
});
