// A recording stand-in for Office.js in Outlook compose, loaded in place of Microsoft's CDN script by the browser
// tests (the task pane takes Office.js's URL from a setting). It keeps a message body and records every call.
//
// Configure it before the page loads: window.__officeStandIn = {bodyType: "html"|"text", body: "...",
// nestedAppAuth: true|false, dialogMessage: "<what the sign-in dialog sends back>"}. Read window.__officeRecording.
//
// Behaviour, each rule from Microsoft's reference:
// - Office.onReady resolves once the host is ready, with {host, platform}
//   (https://learn.microsoft.com/office/dev/add-ins/develop/initialize-add-in).
// - body.getTypeAsync answers "html" or "text" in an AsyncResult (Mailbox 1.1;
//   https://learn.microsoft.com/javascript/api/outlook/office.body#outlook-office-body-gettypeasync-member(1)).
// - body.setSelectedDataAsync inserts at the cursor, replacing any selection, and puts the cursor after the inserted
//   content; with no cursor it inserts at the top. Html coercion on a plain-text body fails with
//   InvalidFormatError; more than 1,000,000 characters fail with DataExceedsMaximumSize
//   (https://learn.microsoft.com/javascript/api/outlook/office.body#outlook-office-body-setselecteddataasync-member(1)).
// - The coercion type is "html" or "text" (Office.CoercionType.Html / .Text); an unknown one is refused.
// - requirements.isSetSupported(name, version) compares dotted versions
//   (https://learn.microsoft.com/javascript/api/office/office.requirementsetsupport).
// - item.to.getAsync answers the resolved To recipients as EmailAddressDetails {displayName, emailAddress,
//   recipientType} (https://learn.microsoft.com/office/dev/add-ins/outlook/get-set-or-add-recipients).
// - item.cc.getAsync answers the resolved Cc recipients the same way (Mailbox 1.1,
//   https://learn.microsoft.com/javascript/api/outlook/office.messagecompose#outlook-office-messagecompose-cc-member).
// - item.addHandlerAsync(Office.EventType.RecipientsChanged, handler, callback) registers a handler that Outlook calls
//   with RecipientsChangedEventArgs {changedRecipientFields: {to, cc, bcc}, type: "olkRecipientsChanged"} whenever
//   the recipients change (Mailbox 1.7; https://learn.microsoft.com/javascript/api/outlook/office.recipientschangedeventargs).
//   Below 1.7 the method is absent. Tests change the recipients with window.__officeSetRecipients(to, cc).
// - userProfile.timeZone is a Windows zone name such as "Central Standard Time"
//   (https://learn.microsoft.com/javascript/api/outlook/office.userprofile).
// - ui.displayDialogAsync opens a dialog and calls back with an AsyncResult whose value is a Dialog; the dialog's
//   messageParent arrives as DialogMessageReceived {message, origin}
//   (https://learn.microsoft.com/office/dev/add-ins/develop/dialog-api-in-office-add-ins).
"use strict";

(function () {
  const setup = Object.assign(
    {
      bodyType: "html",
      body: "",
      cursor: 0,
      nestedAppAuth: true,
      dialogMessage: null,
      mailbox: "1.13",
      to: [],
      cc: [],
      timeZone: "Central Standard Time",
    },
    window.__officeStandIn || {},
  );
  const recording = { calls: [], body: setup.body, bodyType: setup.bodyType, cursor: setup.cursor, dialogs: [] };
  window.__officeRecording = recording;

  const Succeeded = "succeeded";
  const Failed = "failed";

  function result(status, value, error) {
    return { status: status, value: value, error: error, asyncContext: undefined };
  }

  function finish(callback, asyncResult) {
    // Office calls back asynchronously, never inside the call.
    setTimeout(() => callback && callback(asyncResult), 0);
  }

  function callbackOf(args) {
    return args.find((arg) => typeof arg === "function");
  }

  function newer(have, want) {
    const a = String(have).split(".").map(Number);
    const b = String(want || "0").split(".").map(Number);
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if ((a[i] || 0) !== (b[i] || 0)) return (a[i] || 0) > (b[i] || 0);
    }
    return true;
  }

  const body = {
    getTypeAsync(...args) {
      recording.calls.push({ method: "body.getTypeAsync" });
      finish(callbackOf(args), result(Succeeded, recording.bodyType));
    },
    setSelectedDataAsync(data, options, callback) {
      if (typeof options === "function") {
        callback = options;
        options = {};
      }
      const coercion = (options && options.coercionType) || "text";
      recording.calls.push({ method: "body.setSelectedDataAsync", data: data, coercionType: coercion });
      if (typeof data !== "string" || data.length > 1000000) {
        finish(callback, result(Failed, undefined, { name: "DataExceedsMaximumSize", message: "The data is too large", code: 1000 }));
        return;
      }
      if (coercion !== "html" && coercion !== "text") {
        finish(callback, result(Failed, undefined, { name: "InvalidFormatError", message: "Unknown coercion type", code: 1000 }));
        return;
      }
      if (coercion === "html" && recording.bodyType === "text") {
        finish(callback, result(Failed, undefined, { name: "InvalidFormatError", message: "The format of the specified data object is invalid.", code: 1000 }));
        return;
      }
      const before = recording.body.slice(0, recording.cursor);
      const after = recording.body.slice(recording.cursor);
      recording.body = before + data + after;
      recording.cursor = before.length + data.length;
      finish(callback, result(Succeeded, undefined));
    },
  };

  function dialog(url) {
    const handlers = {};
    const opened = {
      url: url,
      closed: false,
      addEventHandler(type, handler) {
        handlers[type] = handler;
      },
      close() {
        opened.closed = true;
      },
    };
    recording.dialogs.push(opened);
    if (setup.dialogMessage !== null) {
      setTimeout(() => {
        const handler = handlers["dialogMessageReceived"];
        if (handler) handler({ message: setup.dialogMessage, origin: new URL(url).origin });
      }, 10);
    }
    return opened;
  }

  function recipientsField(field) {
    return {
      getAsync(...args) {
        recording.calls.push({ method: field + ".getAsync" });
        const recipients = setup[field].map((entry) => Object.assign({ recipientType: "externalUser" }, entry));
        finish(callbackOf(args), result(Succeeded, recipients));
      },
    };
  }

  const recipientHandlers = [];

  function addHandlerAsync(eventType, handler, ...rest) {
    recording.calls.push({ method: "item.addHandlerAsync", eventType: eventType });
    const callback = callbackOf(rest);
    if (eventType !== "olkRecipientsChanged") {
      finish(callback, result(Failed, undefined, { name: "InvalidEventDispatch", message: "Unknown event." }));
      return;
    }
    recipientHandlers.push(handler);
    finish(callback, result(Succeeded, undefined));
  }

  window.__officeSetRecipients = function (to, cc) {
    setup.to = to || [];
    setup.cc = cc || [];
    const args = { changedRecipientFields: { to: true, cc: true, bcc: false }, type: "olkRecipientsChanged" };
    for (const handler of recipientHandlers) setTimeout(() => handler(args), 0);
  };

  window.Office = {
    CoercionType: { Html: "html", Text: "text" },
    AsyncResultStatus: { Succeeded: Succeeded, Failed: Failed },
    EventType: {
      DialogMessageReceived: "dialogMessageReceived",
      DialogEventReceived: "dialogEventReceived",
      RecipientsChanged: "olkRecipientsChanged",
    },
    HostType: { Outlook: "Outlook" },
    PlatformType: { OfficeOnline: "OfficeOnline" },
    context: {
      requirements: {
        isSetSupported(name, version) {
          recording.calls.push({ method: "requirements.isSetSupported", name: name, version: version });
          if (name === "NestedAppAuth") return Boolean(setup.nestedAppAuth) && newer("1.1", version);
          if (name === "Mailbox") return newer(setup.mailbox, version);
          return false;
        },
      },
      mailbox: {
        item: {
          body: body,
          itemType: "message",
          to: recipientsField("to"),
          cc: recipientsField("cc"),
          addHandlerAsync: newer(setup.mailbox, "1.7") ? addHandlerAsync : undefined,
        },
        userProfile: { displayName: "Dana Diaz", emailAddress: "dana@contoso-it.example", timeZone: setup.timeZone },
        diagnostics: { hostName: "OutlookWebApp", hostVersion: "16.0" },
      },
      ui: {
        displayDialogAsync(url, options, callback) {
          if (typeof options === "function") callback = options;
          recording.calls.push({ method: "ui.displayDialogAsync", url: url });
          finish(callback, result(Succeeded, dialog(url)));
        },
      },
    },
    onReady(callback) {
      const info = { host: "Outlook", platform: "OfficeOnline" };
      return new Promise((resolve) => {
        setTimeout(() => {
          if (callback) callback(info);
          resolve(info);
        }, 0);
      });
    },
  };
})();
