// The page's state, owned here and nowhere else: the gateway's config, the signed-in session and the
// connected wallet. Other modules read it through the getters and change it only through the transitions
// below, so every change of who is signed in has one place to look.

/**
 * @typedef {object} Config what GET /api/v1/config says (the fields the page reads)
 * @property {number} chain_id
 * @property {string} api_base_url
 * @property {string} price_list_url
 * @property {string} siwe_domain
 * @property {string} siwe_statement
 * @property {string} siwe_version
 * @property {boolean} payments_enabled
 * @property {string} usdc_address
 * @property {string} dao_wallet_address
 * @property {number | string} min_topup_micros
 * @property {number | string} max_topup_micros
 * @property {Array<number | string>} topup_presets_micros
 *
 * @typedef {object} Session what POST /auth/verify and GET /auth/session return
 * @property {string} wallet_address
 * @property {{ key: string } | null} [default_key] the first key, returned once at the first sign-in
 *
 * @typedef {object} WalletInfo EIP-6963 provider info
 * @property {string} uuid
 * @property {string} name
 * @property {string} icon
 * @property {string} rdns
 *
 * @typedef {{ request: (args: { method: string, params?: unknown[] }) => Promise<any> }} Provider EIP-1193
 * @typedef {{ info: WalletInfo, provider: Provider }} Wallet a wallet found in the browser
 * @typedef {Wallet & { address: string }} ConnectedWallet a wallet and the account it shared
 */

/** @type {Config | null} */
let currentConfig = null;
/** @type {Session | null} */
let currentSession = null;
/** @type {ConnectedWallet | null} */
let currentWallet = null;

/** The gateway's config (loaded once, before anything else runs). */
export function config() {
  if (currentConfig === null) throw new Error("the page's config is not loaded yet");
  return currentConfig;
}

/** @param {Config} loaded */
export function configure(loaded) {
  currentConfig = loaded;
}

/** The signed-in session, or null. */
export function session() {
  return currentSession;
}

/** The wallet connected in this page, or null. */
export function connectedWallet() {
  return currentWallet;
}

/** @param {Session} signedIn */
export function signIn(signedIn) {
  currentSession = signedIn;
}

/** The session is over (expired): the wallet stays connected for signing in again. */
export function endSession() {
  currentSession = null;
}

/** Signed out: neither session nor wallet. */
export function signOut() {
  currentSession = null;
  currentWallet = null;
}

/** @param {ConnectedWallet} connected */
export function useWallet(connected) {
  currentWallet = connected;
}
