// The Office dialog fallback for hosts without nested app authentication: a normal MSAL.js redirect sign-in in a
// dialog window Outlook opens, whose result goes back to the task pane with Office.context.ui.messageParent.
// (Microsoft: "If NAA isn't supported, fall back to the Office dialog API", enable-nested-app-authentication.)
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("slotwise-config").textContent);
  const statusLine = document.getElementById("status");

  function reply(message) {
    Office.context.ui.messageParent(JSON.stringify(message), { targetOrigin: window.location.origin });
  }

  async function signIn() {
    if (typeof window.msal === "undefined") {
      reply({ error: "the sign-in library (MSAL.js) is missing on this Slotwise server" });
      return;
    }
    const app = new window.msal.PublicClientApplication({
      auth: {
        clientId: config.clientId,
        authority: config.authority,
        redirectUri: window.location.origin + config.dialogPath,
      },
      cache: { cacheLocation: "sessionStorage" },
    });
    await app.initialize();
    const returned = await app.handleRedirectPromise();
    const account = (returned && returned.account) || app.getAllAccounts()[0];
    if (!account) {
      await app.loginRedirect({ scopes: config.scopes });
      return;
    }
    const result = await app.acquireTokenSilent({ scopes: config.scopes, account: account });
    reply({ token: result.accessToken });
  }

  Office.onReady(() =>
    signIn().catch((error) => {
      statusLine.textContent = "Sign-in failed.";
      reply({ error: (error && (error.errorMessage || error.message)) || String(error) });
    }),
  );
})();
