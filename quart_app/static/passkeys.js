// Passkeys: sign in, the second step of a login, confirm a session, add one.
// A file of its own: the CSP forbids inline script. Each block of the page that uses it
// carries data-passkey (what to do) and the URLs of its two API calls.
(function () {
  "use strict";

  function toBytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    var text = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(text, function (c) { return c.charCodeAt(0); });
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) out.response.userHandle = toText(response.userHandle);
    }
    return out;
  }

  async function post(url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    var data = response.status === 204 ? {} : await response.json();
    if (!response.ok) {
      var error = new Error(data.message || response.statusText);
      error.code = data.error;
      throw error;
    }
    return data;
  }

  async function authenticate(block) {
    var data = await post(block.dataset.options);
    var credential = await navigator.credentials.get({ publicKey: requestOptions(data.options) });
    var body = { credential: credentialJSON(credential) };
    var remember = document.getElementById("remember");
    if (block.dataset.passkey === "login" && remember) body.remember = remember.checked;
    var done = await post(block.dataset.verify, body);
    window.location.assign(block.dataset.done || done.next || "/");
  }

  async function add(form) {
    var data = await post(form.dataset.options, { password: form.elements.password.value });
    form.elements.password.value = "";
    var credential = await navigator.credentials.create({ publicKey: creationOptions(data.options) });
    await post(form.dataset.verify, {
      name: form.elements.name.value,
      credential: credentialJSON(credential),
    });
    window.location.assign(form.dataset.done);
  }

  function report(block, error) {
    var message = block.querySelector(".error");
    if (!message) return;
    if (error.code === "wrong_password" && block.dataset.wrongPassword) {
      message.textContent = block.dataset.wrongPassword;
    } else if (error.code === "no_pending_login") {
      message.textContent = error.message;
    } else {
      message.textContent = block.dataset.failed;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential) return;
    document.querySelectorAll("[data-passkey]").forEach(function (block) {
      block.hidden = false;
      if (block.dataset.passkey === "add") {
        block.addEventListener("submit", function (event) {
          event.preventDefault();
          add(block).catch(function (error) { report(block, error); });
        });
        return;
      }
      block.querySelector("button").addEventListener("click", function () {
        authenticate(block).catch(function (error) { report(block, error); });
      });
    });
  });
})();
