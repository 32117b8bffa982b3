// carevault passkeys: sign-in as the second factor (button#passkey-signin) and registration on
// the account page (form#passkey-register). The ceremonies run against /api/v1; the server
// (webauthn-rs) checks everything, this file only converts between JSON and WebAuthn buffers.
(function () {
  "use strict";

  function b64uToBuf(s) {
    s = String(s).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    }).then(function (r) {
      return r.text().then(function (t) {
        var j = {};
        try { j = t ? JSON.parse(t) : {}; } catch (e) { j = {}; }
        if (!r.ok) throw new Error(j.detail || ("the server answered " + r.status));
        return j;
      });
    });
  }
  function say(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  var signin = document.getElementById("passkey-signin");
  if (signin) {
    signin.addEventListener("click", function () {
      if (!window.PublicKeyCredential) { say("passkey-status", "This browser does not support passkeys."); return; }
      say("passkey-status", "Waiting for your passkey…");
      post("/api/v1/auth/mfa/passkey/start").then(function (c) {
        var pk = c.options.publicKey;
        pk.challenge = b64uToBuf(pk.challenge);
        (pk.allowCredentials || []).forEach(function (a) { a.id = b64uToBuf(a.id); });
        return navigator.credentials.get({ publicKey: pk }).then(function (cred) {
          return post("/api/v1/auth/mfa/passkey/finish", {
            ceremony_id: c.ceremony_id,
            credential: {
              id: cred.id,
              rawId: bufToB64u(cred.rawId),
              type: cred.type,
              extensions: {},
              response: {
                authenticatorData: bufToB64u(cred.response.authenticatorData),
                clientDataJSON: bufToB64u(cred.response.clientDataJSON),
                signature: bufToB64u(cred.response.signature),
                userHandle: cred.response.userHandle ? bufToB64u(cred.response.userHandle) : null,
              },
            },
          });
        });
      }).then(function () {
        say("passkey-status", "Signed in.");
        window.location.assign("/ui/");
      }).catch(function (e) {
        say("passkey-status", "Passkey sign-in failed: " + e.message);
      });
    });
  }

  var reg = document.getElementById("passkey-register");
  if (reg) {
    reg.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!window.PublicKeyCredential) { say("passkey-reg-status", "This browser does not support passkeys."); return; }
      var name = (document.getElementById("passkey-name") || {}).value || "Passkey";
      say("passkey-reg-status", "Follow your browser's prompt…");
      post("/api/v1/account/passkeys/register/start").then(function (c) {
        var pk = c.options.publicKey;
        pk.challenge = b64uToBuf(pk.challenge);
        pk.user.id = b64uToBuf(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (a) { a.id = b64uToBuf(a.id); });
        return navigator.credentials.create({ publicKey: pk }).then(function (cred) {
          return post("/api/v1/account/passkeys/register/finish", {
            ceremony_id: c.ceremony_id,
            name: name,
            credential: {
              id: cred.id,
              rawId: bufToB64u(cred.rawId),
              type: cred.type,
              extensions: {},
              response: {
                attestationObject: bufToB64u(cred.response.attestationObject),
                clientDataJSON: bufToB64u(cred.response.clientDataJSON),
              },
            },
          });
        });
      }).then(function () {
        say("passkey-reg-status", "Passkey added.");
        window.location.assign("/ui/account?notice=passkey-added");
      }).catch(function (e) {
        say("passkey-reg-status", "The passkey was not added: " + e.message);
      });
    });
  }
})();
