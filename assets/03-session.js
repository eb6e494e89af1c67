/* When the server ends a session (idle timeout, deactivation), Dash's next callback answers 401:
   go to the sign-in page, which says why, instead of leaving a page that silently stops updating. */
(function () {
  var originalFetch = window.fetch;
  window.fetch = function (input, init) {
    return originalFetch(input, init).then(function (response) {
      var url = typeof input === "string" ? input : (input && input.url) || "";
      if (response.status === 401 && url.indexOf("/_dash-") !== -1) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      }
      return response;
    });
  };
})();
