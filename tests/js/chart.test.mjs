// node --test: the chart's series (top five models + "other"), its stacks in exact micros, and the runway.
import assert from "node:assert/strict";
import { test } from "node:test";

import { OTHER, PALETTE, labelledDays, seriesOf, stacksOf } from "../../gateway/sidecar/static/js/chart.js";
import { daysLeft } from "../../gateway/sidecar/static/js/format.js";

const spend = (model, micros) => ({ model, charged_micros: micros, calls: 1 });

function daily(models, days) {
  return {
    models: models.map(([m, v]) => spend(m, v)),
    days: days.map(([day, rows]) => ({
      day, calls: rows.length, charged_micros: rows.reduce((s, [, v]) => s + v, 0),
      models: rows.map(([m, v]) => spend(m, v)),
    })),
    total: { charged_micros: 0 },
  };
}

test("two models: two series, no other", () => {
  const data = daily([["a", 30], ["b", 10]], [["2026-01-01", [["a", 30], ["b", 10]]], ["2026-01-02", []]]);
  assert.deepEqual(seriesOf(data), [{ name: "a", colour: PALETTE[0] }, { name: "b", colour: PALETTE[1] }]);
  assert.deepEqual(stacksOf(data, seriesOf(data)).map((s) => [s.day, s.total, s.micros]), [
    ["2026-01-01", 40n, [30n, 10n]], ["2026-01-02", 0n, [0n, 0n]],
  ]);
});

test("beyond five models the rest is one 'other' series, summed exactly", () => {
  const models = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"].map((m, i) => [m, 100 - i]);
  const data = daily(models, [["2026-01-01", [["m1", 1], ["m6", 7], ["m7", 2]]]]);
  data.days[0].models[1].charged_micros = "9007199254740993"; // past a float's exact integers: stays exact
  const series = seriesOf(data);
  assert.equal(series.length, 6);
  assert.equal(series[5], OTHER);
  assert.deepEqual(stacksOf(data, series)[0].micros, [1n, 0n, 0n, 0n, 0n, 9007199254740995n]);
  assert.throws(() => stacksOf(daily([["a", 1]], [["2026-01-01", [["a", 2 ** 53]]]]), seriesOf(data)), TypeError);
});

test("days of credit left at this rate", () => {
  assert.equal(daysLeft(10_000_000, 300_000, 30), 1000n);
  assert.equal(daysLeft(1, 300_000, 30), 0n);
  assert.equal(daysLeft(0, 5, 30), 0n);
  assert.equal(daysLeft(5_000, 0, 30), null);
});

test("day labels never run into the last one, which ends at the plot's edge", () => {
  for (const width of [220, 244, 300, 420, 700, 1040]) {
    const labelled = [...labelledDays(30, width)].sort((a, b) => a - b);
    assert.equal(labelled.at(-1), 29, `today is labelled at ${width} px`);
    const slot = width / 30;
    const spans = labelled.map((i) => (i === 29 ? [width - 40, width] : [(i + 0.5) * slot - 20, (i + 0.5) * slot + 20]));
    for (let k = 1; k < spans.length; k++) assert.ok(spans[k - 1][1] <= spans[k][0], `labels overlap at ${width} px`);
  }
  assert.deepEqual([...labelledDays(30, 244)].sort((a, b) => a - b), [5, 11, 17, 29]); // 360 px: not day 23
  assert.equal(labelledDays(30, 1040).size, 15); // wide: every other day
});
