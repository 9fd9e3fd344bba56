// The book's reading layout: a display equation wider than its column is shrunk to fit (MathJax 3 draws in
// em units, so a smaller font size scales the whole equation) instead of scrolling sideways. Runs once
// MathJax has typeset the page, and again when the window is resized.
(function () {
  function fit() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (eq) {
      eq.style.fontSize = "";
      var room = eq.parentElement ? eq.parentElement.clientWidth : eq.clientWidth;
      var need = eq.scrollWidth;
      if (room > 0 && need > room) {
        eq.style.fontSize = (Math.floor(1000 * room / need) / 10 - 0.5) + "%";
      }
    });
  }
  function whenTypeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(fit);
    } else {
      setTimeout(whenTypeset, 100);
    }
  }
  window.addEventListener("load", whenTypeset);
  window.addEventListener("resize", fit);
})();
