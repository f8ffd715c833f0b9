// Starts Swagger UI on this API's own document. Kept out of index.html so
// the page's Content-Security-Policy can forbid inline scripts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No call to the public validator (validator.swagger.io): the page must
    // work offline and send the document nowhere.
    validatorUrl: null,
    // ?url= and ?configUrl= must not make this page load another document.
    queryConfigEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    displayRequestDuration: true,
    tryItOutEnabled: false,
    persistAuthorization: false
  });
});
