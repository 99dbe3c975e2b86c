// Keccak-256 as Ethereum uses it (the original Keccak padding, not SHA3-256): for EIP-55 checksums.
// Small and dependency-free; 64-bit lanes are BigInts, which is plenty fast for addresses.

const MASK = (1n << 64n) - 1n;
const RATE_BYTES = 136;
// rotation offsets r[x + 5y] and the 24 round constants of Keccak-f[1600]
const ROTATIONS = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14]
  .map(BigInt);
const ROUND_CONSTANTS = [
  "0000000000000001", "0000000000008082", "800000000000808a", "8000000080008000",
  "000000000000808b", "0000000080000001", "8000000080008081", "8000000000008009",
  "000000000000008a", "0000000000000088", "0000000080008009", "000000008000000a",
  "000000008000808b", "800000000000008b", "8000000000008089", "8000000000008003",
  "8000000000008002", "8000000000000080", "000000000000800a", "800000008000000a",
  "8000000080008081", "8000000000008080", "0000000080000001", "8000000080008008",
].map((hex) => BigInt(`0x${hex}`));

/** @type {(v: bigint, n: bigint) => bigint} */
const rotl = (v, n) => (n === 0n ? v : ((v << n) | (v >> (64n - n))) & MASK);

/** @param {bigint[]} s the 25 lanes, permuted in place */
function permute(s) {
  for (const rc of ROUND_CONSTANTS) {
    const c = [0, 1, 2, 3, 4].map((x) => s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20]);
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1n);
      for (let y = 0; y < 25; y += 5) s[x + y] ^= d;
    }
    /** @type {bigint[]} */
    const b = new Array(25);
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(s[x + 5 * y], ROTATIONS[x + 5 * y]);
    }
    for (let i = 0; i < 25; i++) {
      const x = i % 5;
      const row = i - x;
      s[i] = b[i] ^ (~b[row + ((x + 1) % 5)] & MASK & b[row + ((x + 2) % 5)]);
    }
    s[0] ^= rc;
  }
}

/**
 * Keccak-256 of `bytes` as 64 lower-case hex digits.
 * @param {Uint8Array} bytes
 */
export function keccak256Hex(bytes) {
  const padded = new Uint8Array(Math.ceil((bytes.length + 1) / RATE_BYTES) * RATE_BYTES);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  /** @type {bigint[]} */
  const state = new Array(25).fill(0n);
  for (let block = 0; block < padded.length; block += RATE_BYTES) {
    for (let lane = 0; lane < RATE_BYTES / 8; lane++) {
      let v = 0n;
      for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(padded[block + lane * 8 + k]);
      state[lane] ^= v;
    }
    permute(state);
  }
  let out = "";
  for (let lane = 0; lane < 4; lane++) {
    for (let k = 0; k < 8; k++) out += Number((state[lane] >> BigInt(8 * k)) & 0xffn).toString(16).padStart(2, "0");
  }
  return out;
}
