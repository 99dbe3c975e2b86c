// Money and numbers for display, from integer USD micros (1 credit = 1,000 micros, 1 USD = 1,000,000).
// Only BigInt arithmetic on micros: never a float for money.

/** @typedef {number | bigint | string} Micros an amount of USD micros as the API sends it, or a BigInt */

const MICROS_PER_CREDIT = 1000n;
const MICROS_PER_USD = 1000000n;

/**
 * A micros amount from the API (a safe integer number, a BigInt or a string of digits) as a BigInt.
 * @param {unknown} value
 */
export function toMicros(value) {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  throw new TypeError(`not an integer amount of micros: ${value}`);
}

/** @param {string} digits */
function group(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * @param {Micros} micros
 * @param {bigint} unit
 * @param {number} decimals
 * @param {number} minDecimals
 */
function fixed(micros, unit, decimals, minDecimals) {
  const value = toMicros(micros);
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  let fraction = (abs % unit).toString().padStart(decimals, "0").replace(/0+$/, "");
  fraction = fraction.padEnd(minDecimals, "0");
  return `${sign}${group((abs / unit).toString())}${fraction ? `.${fraction}` : ""}`;
}

/**
 * Credits, exact: 10000000 -> "10,000"; 1500 -> "1.5"; 1 -> "0.001".
 * @param {Micros} micros
 */
export function formatCredits(micros) {
  return fixed(micros, MICROS_PER_CREDIT, 3, 0);
}

/**
 * US dollars, exact, at least cents: 10000000 -> "$10.00"; 123 -> "$0.000123".
 * @param {Micros} micros
 */
export function formatUsd(micros) {
  const text = fixed(micros, MICROS_PER_USD, 6, 2);
  return text.startsWith("-") ? `-$${text.slice(1)}` : `$${text}`;
}

/**
 * A USD amount typed by a person ("10", "10.5", "$25.00") as BigInt micros; RangeError if it is not one.
 * @param {string} text
 */
export function parseUsd(text) {
  const match = /^\s*\$?\s*(\d{1,9})(?:\.(\d{0,6}))?\s*$/.exec(String(text));
  if (!match) throw new RangeError("Enter an amount in US dollars, like 10 or 12.50 (at most 6 decimals).");
  return BigInt(match[1]) * MICROS_PER_USD + BigInt((match[2] ?? "").padEnd(6, "0"));
}

/**
 * An integer count with thousands separators.
 * @param {number | bigint} n
 */
export function formatCount(n) {
  return group(String(n));
}

/**
 * A count and its noun, singular for one: (1, "call") -> "1 call"; (1200, "call") -> "1,200 calls".
 * @param {number | bigint} n
 * @param {string} noun
 */
export function countOf(n, noun) {
  return `${formatCount(n)} ${noun}${n === 1 || n === 1n ? "" : "s"}`;
}

/**
 * A timestamp from the API, in the reader's time zone.
 * @param {string | null | undefined} iso
 */
export function formatTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

/**
 * Whole days `availableMicros` lasts at the rate of `spentMicros` per `days` days; null without spend.
 * @param {Micros} availableMicros
 * @param {Micros} spentMicros
 * @param {number} days
 */
export function daysLeft(availableMicros, spentMicros, days) {
  const spent = toMicros(spentMicros);
  if (spent <= 0n) return null;
  const available = toMicros(availableMicros);
  return available <= 0n ? 0n : (available * BigInt(days)) / spent;
}
