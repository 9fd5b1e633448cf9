import django.db.models.deletion
from django.db import migrations, models


def link_generated_completions(apps, schema_editor):
    """Completions were tied to their version by name; tie them by key."""
    Completion = apps.get_model("annotate", "Completion")
    ModelVersion = apps.get_model("training", "ModelVersion")
    for version in ModelVersion.objects.all():
        Completion.objects.filter(model_name=version.name, model_version=None).update(model_version=version)


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0001_initial'),
        ('training', '0002_default_model_version'),
    ]

    operations = [
        migrations.AddField(
            model_name='completion',
            name='model_version',
            field=models.ForeignKey(blank=True, help_text='The version that generated it; empty for imported completions.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='completions', to='training.modelversion'),
        ),
        migrations.AlterField(
            model_name='completion',
            name='model_name',
            field=models.CharField(blank=True, db_index=True, help_text="A label: the version's name, or an imported file's.", max_length=200),
        ),
        migrations.RunPython(link_generated_completions, migrations.RunPython.noop),
    ]
