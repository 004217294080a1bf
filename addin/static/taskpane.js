// The Slotwise task pane in Outlook compose: sign in (nested app authentication, or the Office dialog where NAA is
// unavailable), list the rep's appointment types, and insert a booking link at the cursor, or suggested times the rep
// picks from the type's free times (in the recipient's zone: the one they chose in an earlier booking, else the
// rep's, unless the rep types another), or a one-off link (a scheduling request with its own duration, days ahead,
// single or multi use, guests chosen from the email's To and Cc, and optionally bound to a recipient's PSA contact
// and open opportunity, so bookings through it land on those records).
//
// Office.js facts this relies on (reference/outlook_and_pods.md §1.3, §1.4):
// - body.getTypeAsync says "html" or "text"; Html coercion on a text body fails, so the type is asked first and the
//   server renders the matching snippet (simple tables, links and bold: Outlook drops inline CSS);
// - body.setSelectedDataAsync inserts at the cursor (at the top if the body never had focus);
// - NAA needs the NestedAppAuth 1.1 requirement set; otherwise Office.context.ui.displayDialogAsync opens our own
//   sign-in page, which runs a normal MSAL flow and sends the token back with messageParent.
// Everything shown to the rep goes through textContent, never innerHTML.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("slotwise-config").textContent);
  const statusLine = document.getElementById("status");
  const problemBox = document.getElementById("problem");
  const section = document.getElementById("types-section");
  const list = document.getElementById("types");
  const noTypes = document.getElementById("no-types");
  const zoneInput = document.getElementById("zone");
  const zoneNote = document.getElementById("zone-note");
  const picker = document.getElementById("picker");
  const pickerHeading = document.getElementById("picker-heading");
  const pickerTimes = document.getElementById("picker-times");
  const pickerInsert = document.getElementById("picker-insert");
  const pickerCancel = document.getElementById("picker-cancel");
  const recipientsSection = document.getElementById("recipients-section");
  const recipientsList = document.getElementById("recipients");
  const oneOff = document.getElementById("oneoff");
  const oneOffHeading = document.getElementById("oneoff-heading");
  const oneOffDuration = document.getElementById("oneoff-duration");
  const oneOffDays = document.getElementById("oneoff-days");
  const oneOffSingle = document.getElementById("oneoff-single");
  const oneOffGuests = document.getElementById("oneoff-guests");
  const oneOffNoGuests = document.getElementById("oneoff-no-guests");
  const oneOffInsert = document.getElementById("oneoff-insert");
  const oneOffCancel = document.getElementById("oneoff-cancel");
  const oneOffBindSet = document.getElementById("oneoff-bind-set");
  const oneOffBind = document.getElementById("oneoff-bind");
  let oneOffType = null;
  // The last PSA answer for the email's recipients (see checkRecipients): the contacts a one-off link may be bound to.
  let matchedRecipients = [];
  const RECIPIENTS_PAUSE_MS = 800;
  const SUGGESTED = 3;
  const MOST = 5;
  // The rep's Outlook zone (a Windows name; the server maps it to IANA with CLDR), used when the recipient's zone is
  // not known. `zoneChosen` is set once the rep types a zone themselves: from then on it wins.
  let repZone = "";
  let zoneChosen = false;
  let picking = null;

  class Problem extends Error {}

  function say(text) {
    statusLine.textContent = text;
  }

  function showProblem(text) {
    problemBox.textContent = text;
    problemBox.hidden = !text;
  }

  // Sign-in

  let nestedApp = null;
  let dialogToken = null;

  function msalPresent() {
    return typeof window.msal !== "undefined" && typeof window.msal.createNestablePublicClientApplication === "function";
  }

  async function nestedAppToken() {
    if (!nestedApp) {
      nestedApp = await window.msal.createNestablePublicClientApplication({
        auth: { clientId: config.clientId, authority: config.authority },
      });
    }
    const request = { scopes: config.scopes };
    try {
      return (await nestedApp.acquireTokenSilent(request)).accessToken;
    } catch (silentError) {
      // Consent or a fresh sign-in is needed (InteractionRequiredAuthError): Outlook shows its own prompt.
      return (await nestedApp.acquireTokenPopup(request)).accessToken;
    }
  }

  function officeDialogToken() {
    return new Promise((resolve, reject) => {
      const url = window.location.origin + config.dialogPath;
      Office.context.ui.displayDialogAsync(url, { height: 60, width: 30 }, (opened) => {
        if (opened.status !== Office.AsyncResultStatus.Succeeded) {
          reject(new Problem("The Slotwise sign-in window could not open (" + opened.error.message + ")."));
          return;
        }
        const dialog = opened.value;
        dialog.addEventHandler(Office.EventType.DialogMessageReceived, (arg) => {
          dialog.close();
          if (arg.origin && arg.origin !== window.location.origin) {
            reject(new Problem("The sign-in window answered from an unexpected address."));
            return;
          }
          let message = null;
          try {
            message = JSON.parse(arg.message);
          } catch (error) {
            message = null;
          }
          if (message && typeof message.token === "string") {
            resolve(message.token);
          } else {
            reject(new Problem("Sign-in did not finish: " + ((message && message.error) || "no token came back") + "."));
          }
        });
        dialog.addEventHandler(Office.EventType.DialogEventReceived, () => {
          reject(new Problem("The sign-in window was closed before sign-in finished."));
        });
      });
    });
  }

  async function accessToken() {
    const nested = Office.context.requirements && Office.context.requirements.isSetSupported("NestedAppAuth", "1.1");
    if (nested) {
      if (!msalPresent()) {
        throw new Problem(
          "The sign-in library (MSAL.js) is missing on this Slotwise server. Ask your Slotwise admin to run scripts/bootstrap.",
        );
      }
      try {
        return await nestedAppToken();
      } catch (error) {
        throw new Problem("Sign-in to Slotwise failed: " + ((error && (error.errorMessage || error.message)) || error) + ".");
      }
    }
    if (!dialogToken) {
      dialogToken = await officeDialogToken();
    }
    return dialogToken;
  }

  // The Slotwise API

  async function api(path, body) {
    const token = await accessToken();
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(config.apiBase + path, {
        method: body === undefined ? "GET" : "POST",
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
      });
    } catch (error) {
      throw new Problem("Slotwise can't be reached right now. Check your connection and try again in a minute.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    const detail = data && data.error && data.error.message;
    if (response.status === 401) {
      dialogToken = null;
      throw new Problem("Slotwise refused your sign-in: " + (detail || "the token was not accepted") + ".");
    }
    if (!response.ok) {
      if (detail && response.status < 500) {
        throw new Problem("Slotwise could not do that: " + detail + ".");
      }
      throw new Problem(
        "Slotwise is not answering properly right now (HTTP " + response.status + "). Try again in a minute." +
          (detail ? " " + detail : ""),
      );
    }
    return data;
  }

  // Outlook

  function officeCall(start) {
    return new Promise((resolve, reject) => {
      start((result) => {
        if (result.status === Office.AsyncResultStatus.Succeeded) {
          resolve(result.value);
        } else {
          reject(result.error || new Error("Outlook refused the request"));
        }
      });
    });
  }

  async function insertLink(type, button) {
    button.disabled = true;
    showProblem("");
    try {
      const item = Office.context.mailbox.item;
      const bodyType = await officeCall((done) => item.body.getTypeAsync(done));
      const format = bodyType === Office.CoercionType.Html ? "html" : "text";
      const snippet = await api("/addin/api/link", { type_id: type.id, body_type: format });
      const coercion = format === "html" ? Office.CoercionType.Html : Office.CoercionType.Text;
      await officeCall((done) => item.body.setSelectedDataAsync(snippet.content, { coercionType: coercion }, done));
      say("Inserted the link to " + type.name + ".");
    } catch (error) {
      showProblem(error instanceof Problem ? error.message : "Outlook could not insert the link: " + (error.message || error) + ".");
    } finally {
      button.disabled = false;
    }
  }

  async function firstRecipient(item) {
    // Only resolved recipients are returned (get-set-or-add-recipients); with none, the links carry no name.
    try {
      const recipients = await officeCall((done) => item.to.getAsync(done));
      const first = recipients && recipients[0];
      return first ? { name: first.displayName || "", email: first.emailAddress || "" } : { name: "", email: "" };
    } catch (error) {
      return { name: "", email: "" };
    }
  }

  function noteZone(answer, recipient) {
    let note = "";
    if (answer.time_zone_source === "recipient") {
      note = "From " + (recipient.name || recipient.email) + "'s earlier booking.";
    } else if (answer.time_zone_source === "yours") {
      note = "Your time zone: " + (recipient.email ? "no earlier booking by " + recipient.email + "." : "no recipient yet.");
    }
    zoneNote.textContent = note;
    zoneNote.hidden = !note;
  }

  function checkedStarts() {
    return Array.from(pickerTimes.querySelectorAll("input:checked")).map((box) => box.value);
  }

  function updatePicker() {
    const count = checkedStarts().length;
    for (const box of pickerTimes.querySelectorAll("input")) {
      box.disabled = !box.checked && count >= MOST;
    }
    pickerInsert.textContent = count === 1 ? "Insert 1 time" : "Insert " + count + " times";
    pickerInsert.disabled = count === 0;
  }

  function closePicker() {
    picking = null;
    picker.hidden = true;
    pickerTimes.replaceChildren();
  }

  async function showTimes(type, button) {
    button.disabled = true;
    showProblem("");
    try {
      closeOneOff();
      const item = Office.context.mailbox.item;
      const recipient = await firstRecipient(item);
      const ask = { type_id: type.id, recipient: recipient, rep_time_zone: repZone };
      if (zoneChosen && zoneInput.value.trim()) {
        ask.time_zone = zoneInput.value.trim();
      }
      const answer = await api("/addin/api/free-times", ask);
      zoneInput.value = answer.time_zone;
      noteZone(answer, recipient);
      if (!answer.times.length) {
        closePicker();
        say("No free times for " + type.name + " in the next two weeks; insert the link instead.");
        return;
      }
      picking = { type: type, button: button, recipient: recipient, zone: answer.time_zone };
      pickerHeading.textContent = "Free times for " + type.name + " (" + answer.time_zone + ")";
      pickerTimes.replaceChildren();
      answer.times.forEach((time, index) => {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = time.starts_at;
        box.checked = index < SUGGESTED;
        box.addEventListener("change", updatePicker);
        label.append(box, " " + time.label);
        pickerTimes.append(label);
      });
      updatePicker();
      picker.hidden = false;
      say("Pick the times to suggest, then insert them.");
    } catch (error) {
      showProblem(error instanceof Problem ? error.message : "Something went wrong: " + (error.message || error) + ".");
    } finally {
      button.disabled = false;
    }
  }

  async function insertTimes() {
    if (!picking) {
      return;
    }
    const chosen = picking;
    const starts = checkedStarts();
    pickerInsert.disabled = true;
    showProblem("");
    try {
      const item = Office.context.mailbox.item;
      const bodyType = await officeCall((done) => item.body.getTypeAsync(done));
      const format = bodyType === Office.CoercionType.Html ? "html" : "text";
      const answer = await api("/addin/api/suggested-times", {
        type_id: chosen.type.id,
        starts: starts,
        time_zone: chosen.zone,
        recipient: chosen.recipient,
      });
      const coercion = format === "html" ? Office.CoercionType.Html : Office.CoercionType.Text;
      const content = format === "html" ? answer.html : answer.text;
      await officeCall((done) => item.body.setSelectedDataAsync(content, { coercionType: coercion }, done));
      closePicker();
      say("Inserted " + answer.times.length + " times for " + chosen.type.name + " (" + answer.time_zone + ").");
    } catch (error) {
      showProblem(error instanceof Problem ? error.message : "Outlook could not insert the times: " + (error.message || error) + ".");
      updatePicker();
    }
  }

  pickerInsert.addEventListener("click", () => insertTimes());
  pickerCancel.addEventListener("click", () => {
    closePicker();
    say("");
  });
  zoneInput.addEventListener("input", () => {
    zoneChosen = zoneInput.value.trim() !== "";
    zoneNote.hidden = true;
  });
  // A zone typed while times are shown lists them again in that zone (on Enter or leaving the field).
  zoneInput.addEventListener("change", () => {
    if (picking && zoneChosen) {
      showTimes(picking.type, picking.button);
    }
  });

  // One-off links

  async function recipientsOf(item) {
    // The email's resolved To and Cc recipients ({name, email}), each address once.
    const found = [];
    for (const field of ["to", "cc"]) {
      if (!item[field] || typeof item[field].getAsync !== "function") continue;
      try {
        const recipients = await officeCall((done) => item[field].getAsync(done));
        for (const recipient of recipients || []) {
          const email = (recipient.emailAddress || "").trim();
          if (email && !found.some((known) => known.email.toLowerCase() === email.toLowerCase())) {
            found.push({ name: recipient.displayName || "", email: email });
          }
        }
      } catch (error) {
        // Recipients Outlook cannot give are simply not offered.
      }
    }
    return found.slice(0, 10);
  }

  function closeOneOff() {
    oneOffType = null;
    oneOff.hidden = true;
    oneOffGuests.replaceChildren();
  }

  async function openOneOff(type, button) {
    button.disabled = true;
    showProblem("");
    try {
      closePicker();
      oneOffType = type;
      oneOffHeading.textContent = "One-off link for " + type.name;
      oneOffDuration.value = String(type.duration_minutes);
      oneOffDays.value = "14";
      oneOffSingle.checked = true;
      const recipients = await recipientsOf(Office.context.mailbox.item);
      oneOffGuests.replaceChildren();
      for (const recipient of recipients) {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = recipient.email;
        const who = recipient.name && recipient.name !== recipient.email ? recipient.name + " <" + recipient.email + ">" : recipient.email;
        label.append(box, " " + who);
        oneOffGuests.append(label);
      }
      oneOffNoGuests.hidden = recipients.length > 0;
      offerBindings();
      oneOff.hidden = false;
      oneOffDuration.focus();
      say("Set the link up, then insert it.");
    } catch (error) {
      showProblem(error instanceof Problem ? error.message : "Something went wrong: " + (error.message || error) + ".");
    } finally {
      button.disabled = false;
    }
  }

  function bindChoice(text, value, checked) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "oneoff-bind";
    radio.value = JSON.stringify(value);
    radio.checked = checked;
    label.append(radio, " " + text);
    return label;
  }

  function offerBindings() {
    // One choice per matched contact and per open opportunity of theirs. The server checks the choice against its
    // own look-up of that address, so the pane sends only the address and the opportunity's id.
    // A choice the rep already made survives a fresh look-up while it is still offered.
    const kept = oneOffBind.querySelector("input:checked");
    const keep = kept ? kept.value : "null";
    const choices = [bindChoice("No PSA contact chosen: the client's address decides, as for any link", null, false)];
    for (const entry of matchedRecipients) {
      const who = entry.contact.name + (entry.company.name ? ", " + entry.company.name : "");
      choices.push(bindChoice(who, { email: entry.email }, false));
      for (const deal of entry.opportunities || []) {
        choices.push(bindChoice(who + ", opportunity " + deal.name, { email: entry.email, opportunity_id: deal.id }, false));
      }
    }
    const again = choices.find((label) => label.firstChild.value === keep) || choices[0];
    again.firstChild.checked = true;
    oneOffBind.replaceChildren(...choices);
    oneOffBindSet.hidden = matchedRecipients.length === 0;
  }

  function wholeNumber(input) {
    const text = input.value.trim();
    return /^[0-9]+$/.test(text) ? Number(text) : text === "" ? null : NaN;
  }

  async function insertOneOff() {
    if (!oneOffType) {
      return;
    }
    const type = oneOffType;
    const duration = wholeNumber(oneOffDuration);
    const days = wholeNumber(oneOffDays);
    if (Number.isNaN(duration) || Number.isNaN(days)) {
      showProblem("Give the duration and the days ahead as whole numbers.");
      return;
    }
    oneOffInsert.disabled = true;
    showProblem("");
    try {
      const item = Office.context.mailbox.item;
      const bodyType = await officeCall((done) => item.body.getTypeAsync(done));
      const format = bodyType === Office.CoercionType.Html ? "html" : "text";
      const guests = Array.from(oneOffGuests.querySelectorAll("input:checked")).map((box) => box.value);
      const bound = oneOffBind.querySelector("input:checked");
      const answer = await api("/addin/api/one-off-links", {
        type_id: type.id,
        body_type: format,
        duration_minutes: duration,
        window_days: days,
        single_use: oneOffSingle.checked,
        guests: guests,
        bind: bound && !oneOffBindSet.hidden ? JSON.parse(bound.value) : null,
      });
      const coercion = format === "html" ? Office.CoercionType.Html : Office.CoercionType.Text;
      await officeCall((done) => item.body.setSelectedDataAsync(answer.content, { coercionType: coercion }, done));
      closeOneOff();
      say(
        "Inserted a " + (answer.single_use ? "single-use" : "multi-use") + " link to " + type.name + " (" +
          answer.duration_minutes + " minutes" + (answer.guests.length ? ", " + answer.guests.length + " guest" +
          (answer.guests.length === 1 ? "" : "s") : "") + ")" + describeBinding(answer.bound_to) + ".",
      );
    } catch (error) {
      showProblem(error instanceof Problem ? error.message : "Outlook could not insert the link: " + (error.message || error) + ".");
    } finally {
      oneOffInsert.disabled = false;
    }
  }

  function describeBinding(bound) {
    if (!bound) return "";
    return " for " + bound.contact.name + (bound.company ? " at " + bound.company : "") +
      (bound.opportunity ? ", on " + bound.opportunity.name : "");
  }

  oneOffInsert.addEventListener("click", () => insertOneOff());
  oneOffCancel.addEventListener("click", () => {
    closeOneOff();
    say("");
  });

  function renderTypes(types) {
    list.replaceChildren();
    for (const type of types) {
      const row = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = type.name;
      const details = document.createElement("span");
      details.className = "details";
      details.textContent = type.duration_minutes + " minutes, " + type.location;
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Insert link";
      button.setAttribute("aria-label", "Insert link to " + type.name);
      button.addEventListener("click", () => insertLink(type, button));
      const times = document.createElement("button");
      times.type = "button";
      times.textContent = "Suggest times";
      times.setAttribute("aria-label", "Suggest times for " + type.name);
      times.addEventListener("click", () => showTimes(type, times));
      const custom = document.createElement("button");
      custom.type = "button";
      custom.textContent = "One-off link";
      custom.setAttribute("aria-label", "One-off link for " + type.name);
      custom.addEventListener("click", () => openOneOff(type, custom));
      row.append(name, details, button, times, custom);
      list.append(row);
    }
    noTypes.hidden = types.length > 0;
    section.hidden = false;
  }

  // Recipients as the PSA knows them. Asked when the pane opens and again once the recipients have stopped changing
  // for a moment (RecipientsChanged, Mailbox 1.7): every look-up costs the MSP's PSA requests (Autotask counts them
  // against its hourly quota), so typing an address is not a request per keystroke. The server caches answers too.

  let recipientsTimer = null;
  let recipientsAsked = 0;

  async function addressesOf(item) {
    const addresses = [];
    for (const field of ["to", "cc"]) {
      if (!item[field] || typeof item[field].getAsync !== "function") continue;
      try {
        const recipients = await officeCall((done) => item[field].getAsync(done));
        for (const recipient of recipients || []) {
          const address = (recipient.emailAddress || "").trim().toLowerCase();
          if (address && !addresses.includes(address)) addresses.push(address);
        }
      } catch (error) {
        // An unresolved recipient list is simply not looked up.
      }
    }
    return addresses.slice(0, 10);
  }

  function describeRecipient(entry) {
    const row = document.createElement("li");
    const who = document.createElement("span");
    who.className = "name";
    const details = document.createElement("span");
    details.className = "details";
    if (entry.status === "matched") {
      who.textContent = entry.contact.name + " (" + entry.email + ")";
      const deals = entry.opportunities || [];
      let text = entry.company.name || "No company";
      if (deals.length) {
        text += " · open: " + deals.map((deal) => deal.name + (deal.stage ? " (" + deal.stage + ")" : "")).join(", ");
      } else {
        text += " · no open opportunities";
      }
      details.textContent = text;
    } else if (entry.status === "unknown") {
      who.textContent = entry.email;
      details.textContent = "Not in your PSA yet.";
    } else {
      who.textContent = entry.email;
      details.textContent = entry.message || "Your PSA could not be asked right now.";
    }
    row.append(who, details);
    return row;
  }

  async function checkRecipients() {
    const item = Office.context.mailbox.item;
    const asked = ++recipientsAsked;
    const addresses = await addressesOf(item);
    if (!addresses.length) {
      recipientsSection.hidden = true;
      matchedRecipients = [];
      if (!oneOff.hidden) offerBindings();
      return;
    }
    let answer;
    try {
      answer = await api("/addin/api/recipients", { addresses: addresses });
    } catch (error) {
      return; // The types and links still work; the recipients section just stays as it was.
    }
    if (asked !== recipientsAsked) return; // a newer look-up is under way
    if (!answer.psa) {
      recipientsSection.hidden = true;
      matchedRecipients = [];
      return;
    }
    matchedRecipients = answer.recipients.filter((entry) => entry.status === "matched");
    if (!oneOff.hidden) offerBindings();
    recipientsList.replaceChildren(...answer.recipients.map(describeRecipient));
    recipientsSection.hidden = false;
  }

  function recipientsChanged() {
    clearTimeout(recipientsTimer);
    recipientsTimer = setTimeout(checkRecipients, RECIPIENTS_PAUSE_MS);
  }

  function watchRecipients() {
    const item = Office.context.mailbox.item;
    if (typeof item.addHandlerAsync === "function" && Office.EventType.RecipientsChanged) {
      item.addHandlerAsync(Office.EventType.RecipientsChanged, recipientsChanged, () => {});
    }
    checkRecipients();
  }

  async function start() {
    if (!Office.context || !Office.context.mailbox || !Office.context.mailbox.item) {
      say("");
      showProblem("Open Slotwise from Outlook while you write an email: this pane works inside Outlook only.");
      return;
    }
    // userProfile.timeZone is a Windows zone name; the server maps it to IANA (CLDR). The rep may type another zone.
    repZone = Office.context.mailbox.userProfile.timeZone || "";
    say("Signing in…");
    try {
      const answer = await api("/addin/api/appointment-types");
      renderTypes(answer.types);
      say(answer.types.length ? "Choose a link to insert at the cursor." : "");
      watchRecipients();
    } catch (error) {
      say("");
      showProblem(error instanceof Problem ? error.message : "Something went wrong: " + (error.message || error) + ".");
    }
  }

  if (typeof window.Office === "undefined") {
    say("");
    showProblem("Office.js could not be loaded, so this pane cannot talk to Outlook. Check your connection and reopen it.");
    return;
  }
  Office.onReady(() => start());
})();
