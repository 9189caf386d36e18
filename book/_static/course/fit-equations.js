// Displayed equations wider than the text column are scaled down until they fit it:
// MathJax 3 does not break lines, and a 1280 px window with both sidebars leaves the text
// about 690 px. Runs once MathJax has typeset the page, and again when the window is
// resized. window.courseEquationsFitted resolves when the first pass is done (the
// browser test, tests/test_website.py, waits for it).
(() => {
  const MIN_SCALE = 0.6; // smaller than this is hard to read: scroll instead (course.css)

  function fit() {
    for (const box of document.querySelectorAll('mjx-container[display="true"]')) {
      if (box.dataset.courseFontSize === undefined) {
        box.dataset.courseFontSize = box.style.fontSize || "";
      }
      box.style.fontSize = box.dataset.courseFontSize;
      const room = box.clientWidth;
      const need = box.scrollWidth;
      if (room > 0 && need > room + 1) {
        const size = parseFloat(getComputedStyle(box).fontSize);
        const scale = Math.max(MIN_SCALE, (room - 2) / need);
        box.style.fontSize = `${(size * scale).toFixed(2)}px`;
      }
    }
  }

  window.courseEquationsFitted = new Promise((done) => {
    window.addEventListener("load", () => {
      const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
      Promise.resolve(typeset).then(fit).finally(done);
    });
  });
  let timer = null;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(fit, 100);
  });
})();
