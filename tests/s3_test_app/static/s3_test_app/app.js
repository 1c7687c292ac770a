// A script, stored gzipped since it is text.
document.addEventListener("DOMContentLoaded", function () { console.log("loaded"); });
