// node --test: Keccak-256, EIP-55 addresses, ERC-20 call data and the EIP-4361 message, against known values.
// tests/js/test_page_modules.py checks the same modules against the Python libraries the server uses.
import assert from "node:assert/strict";
import { test } from "node:test";

import { shortAddress, toChecksumAddress } from "../../gateway/sidecar/static/js/address.js";
import { balanceOfCallData, decodeUint256, transferCallData } from "../../gateway/sidecar/static/js/erc20.js";
import { keccak256Hex } from "../../gateway/sidecar/static/js/keccak.js";
import { buildSiweMessage } from "../../gateway/sidecar/static/js/siwe.js";

const bytes = (text) => new TextEncoder().encode(text);

test("keccak-256 known answers", () => {
  assert.equal(keccak256Hex(bytes("")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  assert.equal(keccak256Hex(bytes("transfer(address,uint256)")).slice(0, 8), "a9059cbb");
  assert.equal(keccak256Hex(bytes("balanceOf(address)")).slice(0, 8), "70a08231");
});

test("EIP-55 checksums (the EIP's own examples)", () => {
  for (const address of ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"]) {
    assert.equal(toChecksumAddress(address.toLowerCase()), address);
  }
  assert.throws(() => toChecksumAddress("0x123"), TypeError);
  assert.equal(shortAddress("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"), "0x5aAe…eAed");
});

test("transfer call data", () => {
  const to = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
  assert.equal(
    transferCallData(to, 10_000_000n),
    "0xa9059cbb000000000000000000000000833589fcd6edb6e08f4c7c32d4f71b54bda02913" +
      "0000000000000000000000000000000000000000000000000000000000989680",
  );
  assert.throws(() => transferCallData(to, 0n), RangeError);
  assert.throws(() => transferCallData(to, 10), RangeError); // a Number is not an amount
  assert.throws(() => transferCallData("0xnope", 1n), TypeError);
  assert.equal(balanceOfCallData(to).length, 2 + 8 + 64);
  assert.equal(decodeUint256("0x" + "0".repeat(56) + "00989680"), 10_000_000n);
});

test("the sign-in message follows EIP-4361 line by line", () => {
  const message = buildSiweMessage({
    domain: "credits.example.com", address: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    statement: "Sign in to credit-gateway.", uri: "https://credits.example.com/", chainId: 8453,
    nonce: "0123456789abcdef", issuedAt: "2026-01-02T03:04:05.000Z", expirationTime: "2026-01-02T03:14:05.000Z",
  });
  assert.equal(message, [
    "credits.example.com wants you to sign in with your Ethereum account:",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "",
    "Sign in to credit-gateway.",
    "",
    "URI: https://credits.example.com/",
    "Version: 1",
    "Chain ID: 8453",
    "Nonce: 0123456789abcdef",
    "Issued At: 2026-01-02T03:04:05.000Z",
    "Expiration Time: 2026-01-02T03:14:05.000Z",
  ].join("\n"));
});

test("the message builder refuses fields that would change its meaning", () => {
  const good = { domain: "a.example", address: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", statement: "Hi",
    uri: "https://a.example/", chainId: 1, nonce: "abcdefgh12" };
  assert.ok(buildSiweMessage(good));
  for (const [field, value] of [["statement", "two\nlines"], ["domain", "a.example/path"], ["nonce", "short"],
    ["chainId", 0], ["address", "0x12"], ["uri", "no scheme"], ["issuedAt", "yesterday"]]) {
    assert.throws(() => buildSiweMessage({ ...good, [field]: value }), TypeError, field);
  }
});
