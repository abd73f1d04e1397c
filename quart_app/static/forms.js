// Show-password buttons: each toggles its field between password and text, so a password
// manager still sees an ordinary password field. A file of its own: the CSP forbids inline script.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  document.querySelectorAll("button.reveal").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("aria-controls"));
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      button.textContent = show ? button.dataset.hide : button.dataset.show;
    });
    // Never submit the password as a visible text field.
    if (input.form) {
      input.form.addEventListener("submit", function () {
        input.type = "password";
      });
    }
  });
});
