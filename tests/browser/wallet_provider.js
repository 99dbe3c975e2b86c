// A test wallet injected into the page before its scripts run (Playwright init script).
// `window.__testWallets` (set by an earlier init script) lists the wallets to install:
// [{ name, rdns, uuid, legacy }]. Each is an EIP-1193 provider that announces itself by EIP-6963 (or, when
// `legacy`, only sits at window.ethereum) and forwards every request to Python through the exposed
// function `__walletRequest(index, method, params)`, which answers { result } or { error: { code, message } }.
(() => {
  const ICON = "data:image/svg+xml;base64," +
    btoa('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8" fill="#e66100"/></svg>');

  function makeProvider(index) {
    const listeners = {};
    const provider = {
      isTestWallet: true,
      async request({ method, params = [] }) {
        const answer = JSON.parse(await window.__walletRequest(index, method, JSON.stringify(params)));
        if (answer.error) {
          const error = new Error(answer.error.message);
          error.code = answer.error.code;
          throw error;
        }
        if (method === "wallet_switchEthereumChain") {
          for (const listener of listeners.chainChanged ?? []) listener(params[0].chainId);
        }
        return answer.result;
      },
      on(event, listener) {
        (listeners[event] ??= []).push(listener);
        return provider;
      },
      removeListener(event, listener) {
        listeners[event] = (listeners[event] ?? []).filter((l) => l !== listener);
        return provider;
      },
    };
    return provider;
  }

  (window.__testWallets ?? []).forEach((wallet, index) => {
    const provider = makeProvider(index);
    if (wallet.legacy) {
      window.ethereum = provider;
      return;
    }
    const detail = Object.freeze({
      info: Object.freeze({ uuid: wallet.uuid, name: wallet.name, icon: ICON, rdns: wallet.rdns }),
      provider,
    });
    const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
    window.addEventListener("eip6963:requestProvider", announce);
    announce();
  });
})();
