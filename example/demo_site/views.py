from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import Upload


class UploadForm(forms.ModelForm):
    class Meta:
        model = Upload
        fields = ["file"]


def index(request: HttpRequest) -> HttpResponse:
    """An upload form, and the uploads with their presigned links."""
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("index")
    return render(request, "demo_site/index.html",
                  {"form": form, "uploads": Upload.objects.all()[:50]})
