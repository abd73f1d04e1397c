// Live logout: a socket that hears when this session ends (logout in another tab, ended from
// another device, password change, expiry) and takes the page to the login form.
// A file of its own because the Content-Security-Policy forbids inline script.
(function () {
  "use strict";
  var script = document.currentScript;
  // Only the path: the socket goes to the host and scheme this page came from.
  var socketPath = new URL(script.dataset.socket, location.href).pathname;
  var loginPath = script.dataset.login;
  var logoutPath = script.dataset.logout;
  var mePath = script.dataset.me;
  var delay = 500;
  var maxDelay = 30000;
  var leaving = false;

  // This page's own logout: its form's redirect says what happened, not the socket.
  document.addEventListener("submit", function (event) {
    var action = event.target.getAttribute("action") || "";
    if (new URL(action, location.href).pathname === logoutPath) leaving = true;
  });

  function toLogin(reason) {
    var url = loginPath + "?next=" + encodeURIComponent(location.pathname + location.search);
    if (reason) url += "&reason=" + encodeURIComponent(reason);
    location.assign(url);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + socketPath);
    var opened = false;
    var ended = false;
    socket.addEventListener("open", function () {
      opened = true;
      delay = 500;
    });
    socket.addEventListener("message", function (message) {
      var data = JSON.parse(message.data);
      if (data.event === "session_ended") {
        ended = true;
        if (!leaving) toLogin(data.reason);
      }
    });
    socket.addEventListener("close", function () {
      if (ended || leaving) return;
      if (!opened) {
        // Refused: is the session over, or is the server just away for a moment?
        fetch(mePath, { credentials: "same-origin" }).then(function (response) {
          if (response.status === 401) toLogin("");
        }, function () {});
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, maxDelay);
    });
  }

  connect();
})();
