// A stand-in for MSAL.js's nested app authentication, served in place of /addin/vendor/msal-browser.min.js by the
// browser tests, because the real library would ask Outlook's NAA bridge (absent in a plain browser) and Entra ID.
// It hands out the token the test minted against its local JWKS (window.__msalStandIn.token) and records calls.
//
// Shapes from MSAL.js's reference (https://learn.microsoft.com/office/dev/add-ins/develop/enable-nested-app-authentication-in-your-add-in):
// - msal.createNestablePublicClientApplication(configuration) resolves to a client;
// - acquireTokenSilent(request) resolves to an AuthenticationResult {accessToken, scopes, ...}, or rejects with an
//   InteractionRequiredAuthError when consent or sign-in is needed; acquireTokenPopup(request) then resolves.
"use strict";

(function () {
  const setup = Object.assign({ token: "", silentFails: false, popupFails: false }, window.__msalStandIn || {});
  const recording = { configurations: [], calls: [] };
  window.__msalRecording = recording;

  class InteractionRequiredAuthError extends Error {
    constructor(message) {
      super(message);
      this.name = "InteractionRequiredAuthError";
      this.errorCode = "interaction_required";
      this.errorMessage = message;
    }
  }

  function answer(request) {
    return { accessToken: setup.token, scopes: request.scopes, tokenType: "Bearer" };
  }

  window.msal = {
    InteractionRequiredAuthError: InteractionRequiredAuthError,
    async createNestablePublicClientApplication(configuration) {
      recording.configurations.push(configuration);
      return {
        async acquireTokenSilent(request) {
          recording.calls.push({ method: "acquireTokenSilent", scopes: request.scopes });
          if (setup.silentFails) throw new InteractionRequiredAuthError("AADSTS65001: consent required");
          return answer(request);
        },
        async acquireTokenPopup(request) {
          recording.calls.push({ method: "acquireTokenPopup", scopes: request.scopes });
          if (setup.popupFails) throw new InteractionRequiredAuthError("user_cancelled: the user closed the prompt");
          return answer(request);
        },
      };
    },
  };
})();
